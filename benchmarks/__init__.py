"""Measurement of exported artifacts and the reports made from it."""
