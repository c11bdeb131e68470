"""Tiny models built with fixed seeds, for tests."""

from __future__ import annotations

from compressor import keras_env


def keras3_all_layers():
    """A Keras 3 functional model using every layer the bridge promises to take."""
    keras = keras_env.keras3()
    keras.utils.set_random_seed(1)
    L = keras.layers
    image = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="conv")(image)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(max_value=6.0, name="relu6")(x)
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    d = L.PReLU(name="prelu")(d)
    s = L.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    x = L.Add(name="add")([d, s])
    x = L.ReLU(name="relu")(x)
    x = L.MaxPooling2D(2, name="maxpool")(x)
    x = L.AveragePooling2D(2, name="avgpool")(x)
    p = L.Permute((2, 1, 3), name="permute")(x)
    x = L.Concatenate(name="concat")([x, p])
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    x = L.Dense(16, activation="relu", name="dense_img")(x)
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    t = L.Embedding(20, 8, name="embed")(tokens)
    t = L.LSTM(8, return_sequences=True, name="lstm")(t)
    t = L.GRU(8, name="gru")(t)
    t = L.Reshape((2, 4), name="reshape")(t)
    t = L.GlobalAveragePooling1D(name="gap")(t)
    x = L.Concatenate(name="merge")([x, t])
    out = L.Dense(5, activation="softmax", name="classes")(x)
    model = keras.Model([image, tokens], out, name="all_layers")
    # non-trivial BatchNorm statistics, so the copy is really checked
    bn = model.get_layer("bn")
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma * 1.5, beta + 0.1, mean + 0.2, var * 2.0])
    return model


def keras3_sequential():
    keras = keras_env.keras3()
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(3)],
        name="seq",
    )


def tf_keras_mnist_cnn():
    """The MNIST-style CNN of the sample models, untrained, in tf-keras."""
    tfk = keras_env.tf_keras()
    tfk.utils.set_random_seed(3)
    L = tfk.layers
    return tfk.Sequential(
        [
            tfk.Input((28, 28, 1)),
            L.Conv2D(32, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(64, activation="relu"),
            L.Dense(10, activation="softmax"),
        ],
        name="mnist_cnn",
    )


def keras3_with_lambda():
    keras = keras_env.keras3()
    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    return keras.Model(inp, keras.layers.Dense(2)(out), name="with_lambda")


def trained_tiny_cnn(epochs: int = 15):
    """A tf-keras Conv-BN-ReLU-Pool-Dense classifier trained on 8x8 digits (~95 % test accuracy)."""
    from compressor.data import samples as sample_data

    keras_env.set_seed(4)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    model = tfk.Sequential(
        [
            tfk.Input((8, 8, 1), name="image"),
            L.Conv2D(8, 3, padding="same", use_bias=False, name="conv"),
            L.BatchNormalization(name="bn"),
            L.ReLU(name="relu"),
            L.MaxPooling2D(2, name="pool"),
            L.Flatten(name="flatten"),
            L.Dense(10, activation="softmax", name="classes"),
        ],
        name="tiny_cnn",
    )
    model.compile(tfk.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = sample_data.load("digits-8", "train")
    model.fit(train.x, train.y, epochs=epochs, batch_size=32, verbose=0)
    return model


def residual_cnn(seed: int = 5):
    """Conv-BN-ReLU → Conv-BN, added to the first branch (a residual Add), → GAP → Dense."""
    keras_env.set_seed(seed)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    inp = tfk.Input((8, 8, 3), name="image")
    a = L.Conv2D(16, 3, padding="same", name="conv1")(inp)
    a = L.BatchNormalization(name="bn1")(a)
    a = L.ReLU(name="relu1")(a)
    b = L.Conv2D(16, 3, padding="same", name="conv2")(a)
    b = L.BatchNormalization(name="bn2")(b)
    x = L.Add(name="add")([a, b])
    x = L.ReLU(name="relu2")(x)
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2D(12, 1, name="project")(d)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(10, activation="softmax", name="classes")(x)
    return tfk.Model(inp, out, name="residual_cnn")


def two_conv_cnn(seed: int = 6):
    """A small CNN whose second conv and dense have input widths divisible by 4 (for 2:4 sparsity)."""
    keras_env.set_seed(seed)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    return tfk.Sequential([
        tfk.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        L.Conv2D(8, 3, padding="same", activation="relu", name="conv2"), L.Flatten(name="flatten"),
        L.Dense(10, activation="softmax", name="classes")], name="two_conv")



def outlier_inputs(x):
    """Digits flattened to 64 features plus a 65th, constant at 1000 (a sensor's raw offset, say)."""
    import numpy as np

    flat = x.reshape(len(x), -1).astype(np.float32)
    return np.concatenate([flat, np.full((len(flat), 1), 1000.0, np.float32)], axis=1)


def outlier_mlp(epochs: int = 30):
    """A digits MLP fed 64 pixels (0-1) and one constant feature of 1000 that its first layer
    ignores (a zero row). Per-tensor int8 of the input spends its whole range on that feature
    and rounds every pixel to zero: full int8 collapses. The first layer alone in float (its
    input then not quantized) is right again: the one layer a search must find."""
    import numpy as np

    from compressor.data import samples as sample_data

    keras_env.set_seed(7)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    train = sample_data.load("digits-8", "train")
    model = tfk.Sequential([tfk.Input((65,), name="features_in"), L.Dense(32, activation="relu", name="hidden"),
                            L.Dense(10, activation="softmax", name="classes")], name="outlier_mlp")
    model.compile(tfk.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x = outlier_inputs(train.x)
    x[:, 64] = 0.0  # trained without the offset, then the first layer is told to ignore it
    model.fit(x, train.y, epochs=epochs, batch_size=32, verbose=0)
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[64] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias])
    return model


def outlier_regressor():
    """The outlier MLP's first layer under a one-unit linear head (the digit's value, regressed):
    no class scores, so the budget is the output's SNR; full int8 rounds every pixel to zero
    again, and the first layer alone in float is right."""
    import numpy as np

    from compressor.data import samples as sample_data

    classifier = outlier_mlp()
    tfk = keras_env.tf_keras()
    keras_env.set_seed(8)
    hidden = classifier.get_layer("hidden")
    model = tfk.Sequential([tfk.Input((65,), name="features_in"), tfk.layers.Dense(32, activation="relu",
                                                                                     name="hidden"),
                            tfk.layers.Dense(1, name="value")], name="outlier_regressor")
    model.get_layer("hidden").set_weights(hidden.get_weights())
    model.get_layer("hidden").trainable = False
    train = sample_data.load("digits-8", "train")
    x = outlier_inputs(train.x)
    model.compile(tfk.optimizers.Adam(1e-2), "mse")
    model.fit(x, train.y.astype(np.float32), epochs=20, batch_size=32, verbose=0)
    return model
