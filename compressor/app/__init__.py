"""The application layer: the click CLI, its terminal views, and the whole job
(compress → export → measure → report)."""
