"""A BERT-class text encoder as Hugging Face exports write them: ``input_ids`` and
``attention_mask`` (int64, dynamic batch and sequence), learned word and position
embeddings, post-LayerNorm blocks of multi-head attention and a GELU MLP, a tanh pooler
over the first token, and two outputs: class scores and the pooled sentence embedding.

Built from a config (BERT-base is ``Config(30522, 12, 768, 12, 3072)``: 110 M parameters)
in tf-keras, so that the same model is a Keras source and, through tf2onnx, an ONNX one.
``train()`` fits the small one on the generated ``topics-text`` sample set.
"""

from __future__ import annotations

from dataclasses import dataclass

from compressor import keras_env


@dataclass(frozen=True)
class Config:
    vocabulary: int = 256
    layers: int = 2
    hidden: int = 64
    heads: int = 4
    intermediate: int = 128
    max_positions: int = 512
    classes: int = 4


MINI = Config()
BASE = Config(30522, 12, 768, 12, 3072)  # bert-base-uncased's shape


def build(config: Config = MINI, name: str = "bert_encoder"):
    """The untrained tf-keras encoder for ``config``."""
    tf, tfk = keras_env.tf(), keras_env.tf_keras()
    L = tfk.layers
    ids = tfk.Input((None,), dtype="int64", name="input_ids")
    mask = tfk.Input((None,), dtype="int64", name="attention_mask")
    positions = tf.expand_dims(tf.range(tf.shape(ids)[1]), 0)  # no new-axis slices: LiteRT lacks them
    x = L.Add(name="embeddings")([L.Embedding(config.vocabulary, config.hidden, name="word_embeddings")(ids),
                                  L.Embedding(config.max_positions, config.hidden, name="position_embeddings")(
                                      positions)])
    x = L.LayerNormalization(epsilon=1e-12, name="embeddings_norm")(x)
    attend = tf.expand_dims(mask, 1)  # every query attends to the unpadded keys
    for index in range(config.layers):
        attention = L.MultiHeadAttention(config.heads, config.hidden // config.heads, name=f"attention_{index}")(
            x, x, attention_mask=attend)
        x = L.LayerNormalization(epsilon=1e-12, name=f"attention_norm_{index}")(L.Add()([x, attention]))
        inner = L.Dense(config.intermediate, activation="gelu", name=f"intermediate_{index}")(x)
        x = L.LayerNormalization(epsilon=1e-12, name=f"output_norm_{index}")(
            L.Add()([x, L.Dense(config.hidden, name=f"output_{index}")(inner)]))
    pooled = L.Dense(config.hidden, activation="tanh", name="embedding")(x[:, 0])
    classes = L.Dense(config.classes, activation="softmax", name="classes")(pooled)
    return tfk.Model({"input_ids": ids, "attention_mask": mask}, [classes, pooled], name=name)


def train(config: Config = MINI, epochs: int = 6, seed: int = 0, learning_rate: float = 1e-3):
    """The encoder fitted on ``topics-text``; returns (model, train set, test set)."""
    from compressor.data import samples

    tfk = keras_env.tf_keras()
    keras_env.set_seed(seed)
    train_set, test_set = samples.load("topics-text", "train"), samples.load("topics-text", "test")
    model = build(config)
    model.compile(tfk.optimizers.Adam(learning_rate), loss=["sparse_categorical_crossentropy", None])
    model.fit(train_set.x, train_set.y, epochs=epochs, batch_size=32, verbose=0)
    return model, train_set, test_set
