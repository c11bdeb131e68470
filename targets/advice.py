"""What a refusal tells the user to try next: only options that, used as named, change the
outcome (``tests/test_next_steps.py`` follows each one), and other routes to an int8 artifact."""

from __future__ import annotations

from compressor.models.source import labelled_output

# The option that replaces each parity bound, by the kind of check that failed (ParityResult.failed_checks)
PARITY_OPTIONS = {"max_abs": ("--max-abs", "the float tolerance"), "agreement": ("--min-agreement", "the top-1 "
                  "agreement floor"), "snr": ("--min-parity-snr", "the SNR floor in dB")}


def _accepts(kinds) -> str:
    """"--min-agreement (the top-1 agreement floor) accepts it knowingly", for the checks that failed."""
    named = [f"{PARITY_OPTIONS[k][0]} ({PARITY_OPTIONS[k][1]})" for k in kinds if k in PARITY_OPTIONS]
    return f"{' and '.join(named)} {'accepts' if len(named) == 1 else 'accept'} it knowingly" if named else ""


def next_steps(profile, source=None, failed=()) -> str:
    """What to try after a parity refusal of ``profile``: options that change the outcome, for the
    checks that ``failed`` (``ParityResult.failed_checks``)."""
    accept = _accepts(failed)
    if not profile.quantized:
        return "a float conversion should not differ this much: please report it" + (f"; {accept}" if accept else "")
    return "next: " + ", ".join([*_other_routes(profile, source), *([accept] if accept else [])])


def _other_routes(profile, source) -> list[str]:
    """Other ways to an int8 artifact of this model than ``profile`` as it is."""
    qat = "compressor compress -r qat-int8 (quantization-aware fine-tuning of Keras models, labelled data)" \
        if source is None or "keras" in source.provides else None
    if profile.builtin_int8_only:  # no float fallback on this hardware
        return [f"{qat}; integer-only hardware cannot keep a layer in float"] if qat else []
    from targets.profiles import PROFILES

    others = [f"{p.name} (16-bit activations)" for p in PROFILES.values()
              if p.runtime == profile.runtime and p.precision == "int16x8"]
    return [*others, "another runtime's int8", *([qat] if qat else [])]


def budget_next_steps(profile, source, floor_checks=(), metric=None) -> str:
    """What to try after an accuracy-budget refusal: the budget's own option (a looser value writes
    the artifact when it passed its parity floor), or the floor's options when what came closest
    was under that floor. ``metric``: the task metric the budget is in."""
    if metric is not None:
        option = f"--max-drop (the budget in {metric.metric.unit})"
    else:
        option = "--max-drop (the budget in top-1 points)" if labelled_output(source) is not None else \
            "--min-snr (the budget's SNR floor in dB)"
    accept = _accepts(floor_checks) if floor_checks else f"{option} accepts a larger loss knowingly"
    return "next: " + ", ".join([*_other_routes(profile, source), accept])
