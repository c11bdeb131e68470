"""Knowledge distillation (Hinton et al., 2015): a small student learns from a teacher.

loss = α · CE(y, s) + (1 − α) · T² · KL(softmax(t/T) ‖ softmax(s/T)), with t and s the
teacher's and student's logits. The student is given, or derived from the teacher by a
width multiplier on conv filters and dense units (the classifier keeps its classes).
The record sets teacher, student-from-scratch and distilled-student accuracy side by
side, trained on the same data for the same epochs, and says plainly which student won.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


from compressor import keras_env
from compressor.algorithms import training
from compressor.algorithms.step import StepConfig, fraction, positive, register_step
from compressor.errors import BadInputError, UnsupportedModelError

@dataclass(frozen=True)
class Distill(StepConfig):
    """Train a smaller student from the model (the teacher) with knowledge distillation."""

    type: ClassVar[str] = "distill"
    width: float = 0.5  # student width multiplier on conv filters / dense units
    alpha: float = 0.1  # weight of the hard-label loss
    temperature: float = 4.0
    compare_scratch: bool = True  # also train the student from scratch, for the report

    def check(self, where: str) -> None:
        super().check(where)
        fraction(where, "width", self.width)
        if not 0.0 <= self.alpha <= 1.0:
            raise BadInputError(f"{where}.alpha: must be in [0, 1], got {self.alpha}")
        positive(where, "temperature", self.temperature)


WIDTH_KEYS = {"Conv1D": "filters", "Conv2D": "filters", "SeparableConv2D": "filters", "Dense": "units"}


def distillation_loss(labels, teacher_logits, student_logits, *, alpha: float, temperature: float):
    """The distillation loss, averaged over the batch (a TensorFlow scalar)."""
    tf = keras_env.tf()
    labels = tf.cast(labels, tf.int32)
    hard = tf.keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True)
    soft_teacher = tf.nn.softmax(teacher_logits / temperature)
    log_soft_teacher = tf.nn.log_softmax(teacher_logits / temperature)
    log_soft_student = tf.nn.log_softmax(student_logits / temperature)
    kl = tf.reduce_sum(soft_teacher * (log_soft_teacher - log_soft_student), axis=-1)
    return tf.reduce_mean(alpha * hard + (1.0 - alpha) * temperature**2 * kl)


def logits_model(model):
    """A model with ``model``'s weights that outputs logits (its final softmax removed)."""
    tfk = keras_env.tf_keras()
    if not training.outputs_probabilities(model):
        return model
    last = model.layers[-1]
    if isinstance(last, tfk.layers.Softmax):
        return tfk.Model(model.inputs, last.input)
    config = last.get_config()
    config["activation"] = "linear"
    config["name"] = last.name + "_logits"
    head = type(last).from_config(config)
    out = head(last.input)
    head.set_weights(last.get_weights())
    return tfk.Model(model.inputs, out)


def derive_student(teacher, width: float, *, trust_model: bool = False):
    """The teacher's architecture with ``width`` × the filters/units (classifier unchanged), freshly initialised."""
    tfk = keras_env.tf_keras()
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    config = teacher.get_config()
    output_names = {t._keras_history.layer.name for t in teacher.outputs}
    for layer in config["layers"]:
        key = WIDTH_KEYS.get(layer["class_name"])
        name = layer["config"].get("name")
        if key and name not in output_names:
            layer["config"][key] = max(1, int(round(layer["config"][key] * width)))
    if any(l["class_name"] in ("Add", "Multiply", "Subtract") for l in config["layers"]):
        raise UnsupportedModelError("distill: deriving a student by width from a residual model is not supported; "
                                    "give a student model")
    cls = tfk.Sequential if type(teacher).__name__ == "Sequential" else tfk.Model
    with SafeModeScope(safe_mode=not trust_model):
        student = cls.from_config(config)
    student._name = f"{teacher.name}_student"
    return student


class _Distiller:
    """Custom training loop: the teacher's logits guide the student's."""

    def __init__(self, teacher, student, *, alpha: float, temperature: float) -> None:
        self.teacher = logits_model(teacher)
        self.student = student
        self.student_logits = logits_model(student)
        self.alpha, self.temperature = alpha, temperature

    def fit(self, data, fine_tune, *, seed: int) -> None:
        tf = keras_env.tf()
        tfk = keras_env.tf_keras()
        keras_env.set_seed(seed)
        optimizer = tfk.optimizers.Adam(fine_tune.learning_rate)
        variables = self.student_logits.trainable_variables

        @tf.function(reduce_retracing=True)
        def step(x, y):
            teacher_logits = self.teacher(x, training=False)
            with tf.GradientTape() as tape:
                student_logits = self.student_logits(x, training=True)
                loss = distillation_loss(y, teacher_logits, student_logits, alpha=self.alpha,
                                         temperature=self.temperature)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        for epoch in range(fine_tune.epochs):
            for x, y in data.batches(fine_tune.batch_size, shuffle=True, seed=seed + epoch):
                step(tf.constant(x), tf.constant(y))
        if self.student_logits is not self.student:  # the logits head is a copy: hand its weights back
            self.student.layers[-1].set_weights(self.student_logits.layers[-1].get_weights())


def distill(teacher, data, config, fine_tune, *, seed: int = 0, eval_data=None, student=None,
            trust_model: bool = False):
    """Train a student from ``teacher``; return ``(student, record)``."""
    keras_env.set_seed(seed)
    student = student if student is not None else derive_student(teacher, config.width, trust_model=trust_model)
    # the from-scratch student starts from the very same initial weights
    scratch = training.copy(student, trust_model=trust_model) if config.compare_scratch else None
    _Distiller(teacher, student, alpha=config.alpha, temperature=config.temperature).fit(data, fine_tune, seed=seed)
    record = {"alpha": config.alpha, "temperature": config.temperature, "width": config.width,
              "teacher_params": int(teacher.count_params()), "student_params": int(student.count_params()),
              "teacher_accuracy": training.accuracy(teacher, eval_data),
              "distilled_accuracy": training.accuracy(student, eval_data)}
    if scratch is not None:
        training.fit(scratch, data, fine_tune, seed=seed)
        record["scratch_accuracy"] = training.accuracy(scratch, eval_data)
        if record["distilled_accuracy"] is not None:
            won = record["distilled_accuracy"] > record["scratch_accuracy"]
            record["verdict"] = ("distillation beat training the student from scratch" if won else
                                 "distillation did NOT beat training the student from scratch")
    return student, record


@register_step(Distill, position="first", why_position="it replaces the model")
def _run(model, config, ctx):
    return distill(model, ctx.data, config, ctx.fine_tune, seed=ctx.seed, eval_data=ctx.eval_data,
                   trust_model=ctx.trust_model)
