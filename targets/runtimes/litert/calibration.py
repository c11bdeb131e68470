"""Calibration for the TFLite converter's post-training quantization, with one copy of the model.

TensorFlow's calibrator (``tensorflow.lite.python.optimize.calibrator.Calibrator``) records the
min and max of every float activation over the representative data, then writes them into the
model. Its native side copies the model five times on the way (the content it is handed, the
model unpacked into objects, a builder that doubles as it fills, the result as a string, the
result as Python bytes): 2.5 GB above the converter's output on a 418 MB BERT-base encoder, the
calibrating process's peak (4.2 GB). :class:`LeanCalibrator` records the same statistics with
TensorFlow's own interpreter and kernels (every tensor kept, no delegate, as the calibrator's
logging interpreter runs them) and writes them with :func:`.flatbuffer._encoded`.

It takes the models whose statistics need nothing but each tensor's final value: one subgraph,
builtin ops only, no variable tensors, no op of the LSTM or RNN families (whose calibration logs
the cell's inner gates in intermediate tensors). Anything else, and int16x8's
``calibrate_and_quantize``, goes to TensorFlow's calibrator unchanged.

The ranges are each tensor's own. TensorFlow's logging reads an op's inputs again after the op
ran (for the LSTM's state), and where the runtime ran an element-wise op in place (ADD, MUL,
SUB writing into an input at its last use) the input's range takes in the op's output: on a
2-layer encoder, 18 of its 115 activations, e.g. the attention scores [-0.49, 0.44] logged as
[-1e9, 0.44] once the mask's -1e9 was added into them. On models without such ops (the CNN
sample) the calibrated model is the library's to the byte.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np


FLOAT32 = 0  # TensorType.FLOAT32 in the TFLite schema


@contextlib.contextmanager
def lean_calibration():
    """The converter with :class:`LeanCalibrator` in place of TensorFlow's for the ``with`` block
    (not thread-safe: it replaces the library's class)."""
    from tensorflow.lite.python.optimize import calibrator

    original = calibrator.Calibrator, calibrator.add_intermediate_tensors
    LeanCalibrator.library = original[0]

    def add_intermediate_tensors(content):
        return original[1](content) if _recurrent(content) else content

    calibrator.Calibrator, calibrator.add_intermediate_tensors = LeanCalibrator, add_intermediate_tensors
    try:
        yield
    finally:
        calibrator.Calibrator, calibrator.add_intermediate_tensors = original


def _recurrent(content) -> bool:
    """Whether the model has an op of the LSTM or RNN families: the ones whose quantization
    takes intermediate tensors, which the library's ``add_intermediate_tensors`` adds. For any
    other model that function changes nothing but re-encodes the whole model natively (2 GB
    above it on the 418 MB encoder); it is skipped."""
    from tensorflow.lite.python import schema_py_generated as schema

    from targets.runtimes.litert.flatbuffer import builtin_codes

    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return any("LSTM" in names.get(code, "") or "RNN" in names.get(code, "")
               for code in builtin_codes(schema.Model.GetRootAs(content, 0)))


class LeanCalibrator:
    """TensorFlow's ``Calibrator`` interface: ``calibrate`` records each float activation's min and
    max (NaN values skipped, as the library's logger skips them) and returns the model with them."""

    library = None  # TensorFlow's own Calibrator class, set by lean_calibration

    def __init__(self, model_content, custom_op_registerers_by_name=None, custom_op_registerers_by_func=None):
        if not model_content:
            raise ValueError("`model_content` must be specified.")
        self._content = model_content
        self._custom = (custom_op_registerers_by_name or [], custom_op_registerers_by_func or [])
        self._logged = None if any(self._custom) else loggable_tensors(model_content)

    def _library(self):
        return self.library(self._content, *self._custom)

    def calibrate(self, dataset_gen) -> bytes:
        if self._logged is None:
            return self._library().calibrate(dataset_gen)
        ranges = _ranges(self._content, self._logged, dataset_gen)
        if ranges is None:  # a sample the lean path does not feed, or a tensor with no value
            return self._library().calibrate(dataset_gen)
        return with_ranges(self._content, ranges)

    def calibrate_and_quantize(self, dataset_gen, *args, **kwargs):
        return self._library().calibrate_and_quantize(dataset_gen, *args, **kwargs)

    def calibrate_and_quantize_single(self, dataset_gen, *args, **kwargs):
        return self._library().calibrate_and_quantize_single(dataset_gen, *args, **kwargs)


def loggable_tensors(content) -> list[int] | None:
    """The tensors TensorFlow's calibrator logs (float32 inputs and outputs of ops with no constant
    data), or None for a model the lean path does not take (see the module's docstring)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    if model.SubgraphsLength() != 1 or _recurrent(content):
        return None
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    if any(code.CustomCode() is not None for code in codes):
        return None
    subgraph = model.Subgraphs(0)
    used: set[int] = set()
    for k in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(k)
        if op.IntermediatesLength():
            return None
        used.update(int(i) for i in op.InputsAsNumpy() if i >= 0)
        used.update(int(i) for i in op.OutputsAsNumpy() if i >= 0)
    logged = []
    for index in sorted(used):
        tensor = subgraph.Tensors(index)
        if tensor.IsVariable():
            return None
        buffer = model.Buffers(tensor.Buffer())
        # constant data inline, or after the flatbuffer (a model over 2 GB stores it by offset)
        constant = buffer is not None and (buffer.DataLength() > 0 or getattr(buffer, "Offset", lambda: 0)() > 1)
        if tensor.Type() == FLOAT32 and not constant:
            logged.append(index)
    return logged


def _ranges(content, logged: list[int], dataset_gen) -> dict[int, tuple] | None:
    """Each logged tensor's (min, max) over every sample; None when a sample is not a list or
    a dict of arrays, or a tensor had no value that is not NaN."""
    from tensorflow.lite.python.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():  # its deprecation in favour of LiteRT's: the calibrator's own kernels here
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    low = np.full(len(logged), np.inf, np.float32)
    high = np.full(len(logged), -np.inf, np.float32)
    targets = None
    for sample in dataset_gen():
        if targets is None:
            targets = _input_indices(interpreter, sample)
            if targets is None:
                return None
            for index, array in zip(targets, _arrays(sample)):
                interpreter.resize_tensor_input(index, np.shape(array), strict=False)
            interpreter.allocate_tensors()
        for index, array in zip(targets, _arrays(sample)):
            interpreter.set_tensor(index, array)
        interpreter.invoke()
        _update(interpreter, logged, low, high)
    if targets is None or not np.all(low <= high):
        return None
    return {index: (low[k], high[k]) for k, index in enumerate(logged)}


def _arrays(sample) -> list:
    return list(sample.values()) if isinstance(sample, dict) else list(sample)


def _input_indices(interpreter, sample) -> list[int] | None:
    """The tensor each of a sample's arrays goes to: a list in the model's input order, a dict by
    the serving signature's input names."""
    if isinstance(sample, list):
        return [detail["index"] for detail in interpreter.get_input_details()]
    if isinstance(sample, dict):
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            return None
        named = interpreter.get_signature_runner(next(iter(signatures))).get_input_details()
        if set(sample) != set(named):
            return None
        return [named[name]["index"] for name in sample]
    return None


def _update(interpreter, logged: list[int], low: np.ndarray, high: np.ndarray) -> None:
    """Widen each tensor's range by its value in the last run (a view of the interpreter's own
    memory, not a copy)."""
    for k, index in enumerate(logged):
        value = interpreter.tensor(index)()
        if value.size == 0:
            continue
        smallest, largest = value.min(), value.max()
        if np.isnan(smallest) or np.isnan(largest):  # NaN propagates: the range of the rest
            value = value[~np.isnan(value)]
            if not value.size:
                continue
            smallest, largest = value.min(), value.max()
        low[k], high[k] = min(low[k], smallest), max(high[k], largest)


def with_ranges(content, ranges: dict[int, tuple]) -> bytes:
    """The model with each tensor's quantization parameters replaced by its (min, max), as the
    library's calibration reader writes them."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from targets.runtimes.litert.flatbuffer import _encoded

    model = flatbuffer_utils.convert_bytearray_to_object(content)
    tensors = model.subgraphs[0].tensors
    for index, (low, high) in ranges.items():
        parameters = schema.QuantizationParametersT()
        parameters.min, parameters.max = [float(low)], [float(high)]
        tensors[index].quantization = parameters
    return _encoded(model)
