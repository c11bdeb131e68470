"""Target profiles: what a piece of hardware runs, as declarative records.

Adding a target means adding a :class:`TargetProfile` to the registry below, not
copying logic: the runtime module named by ``runtime`` does the work, reading the
profile's precision, I/O types and options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Mapping

from compressor.errors import BadInputError, UsageError
from compressor import cpu

RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN", "Bidirectional", "ConvLSTM2D"})
# Recurrent layers TFLite has no fused kernel for: their loops crash its int8 calibrator
# (a segmentation fault in calibrator._feed_tensors, TF 2.21; LSTM, fused, converts).
UNFUSED_RECURRENT = frozenset({"GRU", "SimpleRNN"})
# A quantization-aware-trained model carries fake-quantization: only int8 artifacts are faithful to it.
FAKE_QUANT_WRAPPERS = frozenset({"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"})
# layers (Keras) and ops (ONNX) whose weights weight-only compression stores in int8/int4
WEIGHT_ONLY_LAYERS = frozenset({"Dense", "EinsumDense", "Embedding", "ReversibleEmbedding", "MultiHeadAttention", "MatMul", "Gemm",
                                "Gather"})
MIN_WEIGHT_ONLY_SHARE = 0.5


@dataclass(frozen=True)
class Parity:
    """How closely an artifact must follow its source model on validation samples.

    Parity catches conversion bugs; the precision a profile promises is the accuracy
    columns' business. So ``max_abs`` bounds the largest output difference against the
    source computed at the profile's own precision (``weights``: the source's weights
    rounded to that type first, for fp16), scaled by the output range (max(1, |output|
    max)). ``min_agreement`` is a floor on top-1 agreement with the fp32 source for
    classifier outputs, and ``min_snr_db`` on the SNR of other outputs.

    A float conversion's arithmetic differs from the source's (another accumulation order,
    other kernels): on a few samples that noise can cross ``max_abs`` while the artifact is
    right. So samples over it are forgiven when they are at most ``outlier_share`` of the
    samples, every judged output keeps ``noise_snr_db`` of SNR, and top-1 agreement stays at
    99 % or more: a conversion bug (a transposed weight, a dropped normalization, swapped
    outputs, a wrong layout) moves every sample and fails all three.
    """

    max_abs: float | None = None
    min_agreement: float | None = None
    min_snr_db: float = 20.0
    weights: str | None = None  # "float16": the reference has its weights rounded to that type
    outlier_share: float = 0.01  # samples that may cross max_abs, as a share, when the SNR holds
    noise_snr_db: float = 60.0  # the SNR a float artifact keeps when its differences are arithmetic noise

    def override(self, user: "Parity | ParityBounds | None") -> "Parity":
        """This rule with the user's bounds in place of the ones it declares.

        A user's ``max_abs`` replaces a float profile's tolerance, ``min_agreement`` a
        quantized (or fp16) profile's agreement floor and ``min_snr_db`` (from
        :class:`ParityBounds` only) its SNR floor on outputs without class scores; none adds
        a check the profile does not make.
        """
        if user is None:
            return self
        user_snr = user.min_snr_db if isinstance(user, ParityBounds) else None
        for name, value in (("max_abs", user.max_abs), ("min_agreement", user.min_agreement)):
            if value is not None and not (value > 0 and (name == "max_abs" or value <= 1)):
                raise BadInputError(f"parity {name} must be {'> 0' if name == 'max_abs' else 'in (0, 1]'}, "
                                    f"not {value}")
        if user_snr is not None and not user_snr == user_snr:  # NaN
            raise BadInputError(f"parity min_snr_db must be a number of dB, not {user_snr}")
        return dataclasses.replace(
            self,
            max_abs=user.max_abs if user.max_abs is not None and self.max_abs is not None else self.max_abs,
            min_agreement=user.min_agreement if user.min_agreement is not None and self.min_agreement is not None
            else self.min_agreement,
            min_snr_db=user_snr if user_snr is not None and self.min_agreement is not None else self.min_snr_db,
        )


@dataclass(frozen=True)
class ParityBounds:
    """The user's own parity bounds (``--max-abs``, ``--min-agreement``, ``--min-parity-snr``):
    each one set replaces the profile's bound of that kind (:meth:`Parity.override`)."""

    max_abs: float | None = None
    min_agreement: float | None = None
    min_snr_db: float | None = None

    @property
    def weights(self) -> None:
        return None


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    hardware: str
    runtime: str  # litert | tflm | onnxruntime | openvino
    precision: str  # fp32 | fp16 | bf16 | dynamic-int8 | int8 | int16x8
    parity: Parity
    input_type: str = "float32"
    output_type: str = "float32"
    builtin_int8_only: bool = False  # every op must have an int8 kernel (MCU, Edge TPU)
    # the batch the artifact is converted with, for devices that run one sample at a time on
    # static shapes (TFLite Micro, the Edge TPU compiler): shape arithmetic folds into constants
    static_batch: int | None = None
    unsupported_layers: frozenset = frozenset()
    options: Mapping = field(default_factory=dict)
    notes: str = ""
    takes_qat: bool | None = None  # takes a quantization-aware-trained model; None: only full int8 does
    device_class: str = "CPU"  # what it ships to, for the report's recommendation per class
    # CPU class name -> options that replace ``options`` on that class (compressor.cpu.CLASSES)
    cpu_options: Mapping = field(default_factory=dict)
    cpu_class: str | None = None  # the class the options were chosen for (set by for_cpu)
    speed_caveat: str = ""  # why it may be slower than its runtime's fp32 (reports quote it when it is)
    # CPU features (any one of them) this machine needs to run the artifact, and so to verify it
    needs_flags: tuple = ()
    # weight-only profiles: the layer types whose weights they store compressed (the rest stay float)
    compresses: frozenset = frozenset()

    @property
    def quantized(self) -> bool:
        return self.precision not in ("fp32", "fp16", "bf16")

    @property
    def takes_fake_quant(self) -> bool:
        return self.precision == "int8" if self.takes_qat is None else self.takes_qat

    @property
    def runs_on_cpu(self) -> bool:
        return self.device_class == "CPU"

    def for_cpu(self, name: str = cpu.HOST) -> "TargetProfile":
        """This profile with the options chosen for CPU class ``name`` (``host``: this machine's).

        Profiles for other devices (GPU, Edge TPU, microcontroller) are returned unchanged.
        """
        if not self.runs_on_cpu:
            return self
        chosen = cpu.get_class(name)
        return dataclasses.replace(self, options={**self.options, **self.cpu_options.get(chosen.name, {})},
                                   cpu_class=chosen.name)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["unsupported_layers"] = sorted(self.unsupported_layers)
        data["compresses"] = sorted(self.compresses)
        data["options"] = dict(self.options)
        data["cpu_options"] = {name: dict(options) for name, options in self.cpu_options.items()}
        return data


FP32 = Parity(max_abs=1e-4)
# fp16 weights: within 1e-2 of the source run with the same fp16-rounded weights (a conversion
# bug shows there), and top-1 agreement with the fp32 source of at least 99 % (SNR 40 dB on
# outputs that are not class scores): what rounding itself may cost, bounded.
FP16 = Parity(max_abs=1e-2, min_agreement=0.99, min_snr_db=40.0, weights="float16", noise_snr_db=40.0)
INT8 = Parity(min_agreement=0.95)
# bfloat16 computation: an 8-bit mantissa (7 stored), about 2.4 significant digits, rounded at
# every layer; no tolerance on single values (they move by ~1e-2 relative), but the top-1 of at
# least 99 % of samples and 30 dB of SNR on other outputs (measured: 36-45 dB on the samples).
BF16 = Parity(min_agreement=0.99, min_snr_db=30.0)

PROFILES: dict[str, TargetProfile] = {}


def register(profile: TargetProfile) -> TargetProfile:
    if profile.name in PROFILES:
        raise ValueError(f"target profile '{profile.name}' is registered twice")
    PROFILES[profile.name] = profile
    return profile


for _profile in (
    TargetProfile("tflite-fp32", "LiteRT float32 reference (any CPU, XNNPACK)", "CPU (ARM/x86)", "litert", "fp32", FP32),
    TargetProfile("tflite-fp16", "LiteRT float16 weights for mobile GPU delegates", "mobile GPU", "litert", "fp16", FP16,
                  notes="run here on the CPU, which computes in float32 from the float16 weights",
                  device_class="mobile GPU"),
    TargetProfile("tflite-dynamic-int8", "LiteRT dynamic-range int8 weights, float activations", "CPU (ARM/x86)",
                  "litert", "dynamic-int8", INT8, takes_qat=True,
                  # measured, MobileNetV2 224², 1 thread, x86 VNNI: 14.1 ms with the default XNNPACK delegate,
                  # 13.6 ms without any delegate, fp32 7.5 ms; XNNPACK's latest features change nothing
                  speed_caveat="LiteRT runs dynamic-range layers with its built-in hybrid kernels, not XNNPACK "
                               "(the same latency with the delegate off), quantizing activations at every layer: "
                               "it buys a 4x smaller file, not speed; tflite-int8 is the fast int8"),
    TargetProfile("tflite-int8", "LiteRT full-integer int8, float I/O, for mobile/ARM CPUs (XNNPACK)",
                  "mobile/ARM CPU", "litert", "int8", INT8, unsupported_layers=UNFUSED_RECURRENT),
    TargetProfile("tflite-int16x8", "LiteRT int16 activations x int8 weights (higher accuracy int)", "CPU (ARM/x86)",
                  "litert", "int16x8", INT8, unsupported_layers=UNFUSED_RECURRENT,
                  speed_caveat="LiteRT runs 16x8 quantized ops with its reference kernels, not XNNPACK: an "
                               "accuracy option, not a speed one"),
    TargetProfile("edgetpu", "Edge-TPU-ready LiteRT: every op int8, int8 I/O (the Edge TPU compiler is not run)",
                  "Coral Edge TPU", "litert", "int8", INT8, input_type="int8", output_type="int8",
                  builtin_int8_only=True, unsupported_layers=RECURRENT, device_class="Edge TPU", static_batch=1,
                  speed_caveat="measured on this host's CPU, where its int8 input and output are quantized and "
                               "dequantized around each call; an Edge TPU runs it on the accelerator"),
    TargetProfile("mcu", "TensorFlow Lite Micro int8 for Cortex-M class microcontrollers, with C array and arena size",
                  "Cortex-M microcontroller", "tflm", "int8", INT8, input_type="int8", output_type="int8",
                  builtin_int8_only=True, unsupported_layers=RECURRENT, device_class="microcontroller",
                  static_batch=1),
    # weight-only on LiteRT: the LiteRT (AI Edge) Quantizer's recipes on the float model
    # (targets/runtimes/litert/weights.py): int8 weights per channel dequantized in the graph;
    # int4 weights in blocks of 32 on XNNPACK's blockwise kernels
    TargetProfile("tflite-int8w", "LiteRT with int8 weights (per channel), float activations and arithmetic",
                  "mobile/ARM CPU", "litert", "int8w", INT8, compresses=WEIGHT_ONLY_LAYERS),
    TargetProfile("tflite-int4w", "LiteRT with int4 weights in blocks of 32 (XNNPACK blockwise kernels), float I/O",
                  "mobile/ARM CPU", "litert", "int4w", INT8, compresses=WEIGHT_ONLY_LAYERS),
    TargetProfile("onnx-fp32", "ONNX Runtime float32 reference", "CPU (x86/ARM)", "onnxruntime", "fp32", FP32),
    TargetProfile("onnx-dynamic-int8", "ONNX Runtime dynamic int8 (for LSTM/transformer-like models)", "CPU (x86/ARM)",
                  "onnxruntime", "dynamic-int8", INT8,
                  # measured, MobileNetV2 224², 1 thread, x86 VNNI: 67 ms against 8.8 ms for onnx-fp32 (SPEED.md)
                  speed_caveat="ONNX Runtime runs dynamically quantized convolutions as ConvInteger, with a "
                               "quantize, a cast and a rescale around each, and no fast kernel for it on CPU: "
                               "dynamic int8 pays on MatMul-heavy models (LSTM, transformers); onnx-int8 is the "
                               "fast int8 for convolutions"),
    # Per CPU class (targets/cpu.py). Where int8 pairs are summed in int16 (x86 without VNNI,
    # and any CPU we cannot classify): signed int8 activations with 7-bit weights (reduce_range);
    # measured on the MNIST sample model, top-1 agreement 97.8 % without it, 99.6 % with. With a
    # dot product nothing saturates: full 8-bit weights; on x86 VNNI uint8 activations (U8S8),
    # which ONNX Runtime's VNNI kernels run at 2.09x fp32 against 1.28x for S8S8 (MobileNetV2
    # 224², one thread; BENCHMARKS.md has the figures per class).
    TargetProfile("onnx-int8", "ONNX Runtime static int8 QDQ, per-channel weights, settings per CPU class",
                  "x86/Arm CPU", "onnxruntime", "int8", INT8,
                  options={"activations": "int8", "reduce_range": True},
                  cpu_options={"x86-vnni": {"activations": "uint8", "reduce_range": False},
                               "x86-amx": {"activations": "uint8", "reduce_range": False},
                               "arm64-dotprod": {"reduce_range": False}, "arm64": {"reduce_range": False}}),
    # weight-only on ONNX Runtime: MatMulNBits (and GatherBlockQuantized for embeddings), blocks of
    # 32 input channels, symmetric; accuracy_level 4 lets MLAS quantize the activations per block
    # to int8 inside the op and use its integer kernels (ONNX Runtime's advice for CPU)
    TargetProfile("onnx-int8w", "ONNX Runtime MatMulNBits: int8 weights in blocks of 32, float activations",
                  "x86/Arm CPU", "onnxruntime", "int8w", INT8, options={"block_size": 32, "accuracy_level": 4},
                  compresses=WEIGHT_ONLY_LAYERS),
    TargetProfile("onnx-int4w", "ONNX Runtime MatMulNBits: int4 weights in blocks of 32, float activations",
                  "x86/Arm CPU", "onnxruntime", "int4w", INT8, options={"block_size": 32, "accuracy_level": 4},
                  compresses=WEIGHT_ONLY_LAYERS),
    TargetProfile("openvino-fp32", "OpenVINO IR float32 reference on the CPU plugin", "Intel CPU", "openvino", "fp32",
                  FP32),
    TargetProfile("openvino-fp16", "OpenVINO IR with float16-compressed weights", "Intel CPU/GPU", "openvino", "fp16",
                  FP16, device_class="Intel GPU"),
    # weight-only compression (NNCF compress_weights): the weights of MatMul and embedding layers
    # stored in int8 or int4 and decompressed in the layer, activations in float: transformers and
    # MLPs, whose size is in their weights; offered where those layers hold at least half the
    # weights (VGG's classifier, an encoder), not for a CNN whose convolutions would stay float
    TargetProfile("openvino-int8w", "OpenVINO IR with int8 weights (per-channel asymmetric), float activations",
                  "Intel CPU/GPU", "openvino", "int8w", INT8, compresses=WEIGHT_ONLY_LAYERS),
    TargetProfile("openvino-int4w", "OpenVINO IR with int4 weights in groups of 32 (embeddings and last layer int8)",
                  "Intel CPU/GPU", "openvino", "int4w", INT8, options={"group_size": 32, "ratio": 1.0},
                  compresses=WEIGHT_ONLY_LAYERS),
    # bf16 inference precision on the CPU plugin (oneDNN's AMX / AVX-512 BF16 kernels), written
    # into the IR's runtime options; a CPU without bf16 cannot run it, so it is offered only there
    TargetProfile("openvino-bf16", "OpenVINO IR run in bfloat16 on CPUs with AMX or AVX-512 BF16", "Intel Xeon (AMX)",
                  "openvino", "bf16", BF16, needs_flags=cpu.BF16_FLAGS,
                  notes="fp32 weights in the IR, computed in bf16 (the IR's INFERENCE_PRECISION_HINT)"),
    # overflow_fix "enable" (7-bit weights in every layer; NNCF's default does the first only)
    # where int8 pairs are summed in int16: measured on the MobileNetV2 sample model without
    # VNNI, top-1 agreement 97.6 % (accuracy -0.89 pt) with NNCF's default, 99.3 % (-0.44 pt)
    # with it. Classes with a dot product do not saturate: 8-bit weights everywhere.
    TargetProfile("openvino-int8", "OpenVINO IR int8 quantized with NNCF, settings per CPU class", "Intel/Arm CPU",
                  "openvino", "int8", INT8, options={"overflow_fix": "enable"},
                  cpu_options={name: {"overflow_fix": "disable"}
                               for name in ("x86-vnni", "x86-amx", "arm64-dotprod", "arm64")}),
):
    register(_profile)


def get_profile(name: str) -> TargetProfile:
    """The profile registered as ``name``; BadInputError names the valid ones."""
    if name not in PROFILES:
        raise BadInputError(f"unknown target '{name}' (valid: {', '.join(PROFILES)})")
    return PROFILES[name]


def validate_targets(names) -> list[str]:
    """The requested target names, duplicates dropped; BadInputError names any unknown one
    (checked before any work starts). ``all`` stands for every profile that takes the model."""
    unknown = [name for name in names if name not in PROFILES and name != "all"]
    if unknown:
        raise UsageError(f"unknown target '{unknown[0]}' (valid: {', '.join(PROFILES)}, all)")
    return list(dict.fromkeys(names))


def why_not_weights(profile: TargetProfile, report) -> str | None:
    """Why weight-only ``profile`` is not worth it on a model with this inspection ``report``
    (its MatMul and embedding layers hold under half the weights), or None."""
    if not profile.compresses:
        return None
    share = sum(layer.params for layer in report.layers if layer.type in profile.compresses) / max(report.params, 1)
    if share >= MIN_WEIGHT_ONLY_SHARE:
        return None
    return (f"{profile.precision} compresses MatMul and embedding weights, {share:.0%} of this model's "
            f"(under {MIN_WEIGHT_ONLY_SHARE:.0%}): the rest would stay float; full int8 compresses them all")


def why_not(profile: TargetProfile, layer_types: set[str]) -> str | None:
    """Why ``profile`` cannot take a model made of ``layer_types`` here, or None if it can."""
    if profile.needs_flags and not set(profile.needs_flags) & set(cpu.host()["flags"]):
        return (f"this CPU has none of {', '.join(profile.needs_flags)}: it cannot run (and so cannot verify) "
                f"{profile.precision} artifacts")
    if layer_types & FAKE_QUANT_WRAPPERS and not profile.takes_fake_quant:
        return f"a quantization-aware-trained model goes to full-int8 targets, not {profile.name}"
    blocked = sorted(layer_types & profile.unsupported_layers)
    if blocked:
        return f"{', '.join(blocked)} {'has' if len(blocked) == 1 else 'have'} no int8 kernel on {profile.hardware}"
    return None



