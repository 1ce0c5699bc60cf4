"""Conditioning on a class label: a learned class embedding added to the decoder's input at every position."""

import keras
import tensorflow as tf

from imagetransformer import conditioning


@keras.saving.register_keras_serializable(package="imagetransformer")
class ClassConditioner(keras.layers.Layer):
    """The conditioner of a class-conditional Image Transformer, `p(image | class)`.

    A conditioner is what the decoder (`ImageTransformer(conditioner=...)`) composes with to model images given
    something beside their own earlier pixels. It has

    - `condition`: the `imagetransformer.conditioning.Condition` it takes (input key, checks, spec);
    - `cross_attention`: whether decoder blocks cross-attend to its `"memory"` (False here);
    - `call(value)`: the conditioning state, computed once per image and kept in the decoder state while decoding;
    - `add_to_inputs(x, state, rows, cols)`: the decoder input at the positions of pixels `(rows, cols)` plus what
      the condition adds there.

    Here the state is the class embedding, added to every position alike (in each cached step too).

    Args:
        num_classes: the number of classes; labels are ints in `0..num_classes-1`.
        hidden_size: the decoder's width.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(labels)`: int `[batch]` -> `{"condition": [batch, 1, hidden_size]}`.
        `add_to_inputs(x, state, rows, cols)`: `x` `[batch, length, hidden_size]` -> the same shape.

    Example:
    >>> conditioner = ClassConditioner(num_classes=10, hidden_size=16)
    >>> state = conditioner(tf.constant([3, 7]))
    >>> conditioner.add_to_inputs(tf.zeros([2, 5, 16]), state, None, None).shape
    TensorShape([2, 5, 16])
    """

    cross_attention = False

    def __init__(self, num_classes, hidden_size, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} must be None (unconditional) or an integer >= 1.")
        self.num_classes = int(num_classes)
        self.hidden_size = int(hidden_size)
        self.condition = conditioning.ClassLabel(self.num_classes)
        self.class_embedding = keras.layers.Embedding(self.num_classes, self.hidden_size, name="class_embedding")

    def build(self, input_shape=None):
        self.class_embedding.build((None,))
        self.built = True

    def call(self, labels, training=None):
        del training
        return {"condition": self.class_embedding(labels)[:, None, :]}  # [batch, 1, hidden]

    def add_to_inputs(self, x, state, rows, cols):
        del rows, cols  # the same at every position
        return x + tf.cast(state["condition"], x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, hidden_size=self.hidden_size)
        return config
