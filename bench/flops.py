"""FLOPs of an ImageTransformer, counted two ways that must agree.

- `analytic_forward_flops(model)`: the formula, per image, of what the model computes (a multiply-add = 2 FLOPs):

      per layer:  qkv projection     2 L d (3 d)
                  output projection  2 L d d
                  feed-forward       2 L d f  x 2
                  attention          2 x 2 L S d     (scores and weighted values; S = keys each query block
                                                      computes against: memory + block for local_1d, the
                                                      (qh + fh) x (qw + 2 fw) memory region for local_2d, L for
                                                      global; masked scores are computed too, so they count)
      head:       2 L d P
      (L positions, d hidden, f filter, P head parameters; embeddings, norms and softmax are not counted.)

- `graph_forward_flops(model)`: the sum over the matrix products (MatMul, BatchMatMul, Einsum) of the traced
  forward graph of one image, from their static shapes: the check that the formula matches the code.

A training step costs about 3x the forward pass (the backward pass computes two products per forward product).
"""

import numpy as np
import tensorflow as tf


def analytic_forward_flops(model):
    """Forward FLOPs per image of `model` (an `imagetransformer.ImageTransformer`)."""
    length, d, f = model.order.length, model.hidden_size, model.filter_size
    if model.attention_type == "local_1d":
        keys = model.memory_length + model.block_length
    elif model.attention_type == "local_2d":
        keys = model.decoder_blocks[0].attention.memory_length
    else:
        keys = length
    per_layer = 2 * length * d * 3 * d + 2 * length * d * d + 2 * 2 * length * d * f + 2 * 2 * length * keys * d
    head = 2 * length * d * model.head.projection.units
    return model.num_layers * per_layer + head


def _einsum_flops(op):
    equation = op.get_attr("equation").decode()
    inputs, _ = equation.split("->")
    sizes = {}
    for spec, tensor in zip(inputs.split(","), op.inputs):
        for letter, dim in zip(spec, tensor.shape.as_list()):
            sizes[letter] = dim
    return 2 * int(np.prod(list(sizes.values())))


def graph_forward_flops(model):
    """Forward FLOPs per image, summed over the matrix products of the traced graph of `model(images)`."""
    spec = tf.TensorSpec([1, *model.image_shape], tf.uint8)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type == "Einsum":
            total += _einsum_flops(op)
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a, b = (t.shape.as_list() for t in op.inputs)
            transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            transpose_b = op.get_attr("transpose_b" if op.type == "MatMul" else "adj_y")
            m, k = (a[-1], a[-2]) if transpose_a else (a[-2], a[-1])
            n = b[-2] if transpose_b else b[-1]
            batch = np.prod(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))) if len(a) > 2 else 1
            total += 2 * int(batch) * m * k * n
    return total
