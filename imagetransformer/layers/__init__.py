"""Keras layers of the Image Transformer: embedding, the three attention variants, the decoder block."""

from imagetransformer.layers.attention import MaskedSelfAttention
from imagetransformer.layers.decoder_block import DecoderBlock
from imagetransformer.layers.embedding import PixelEmbedding, timing_signal_2d
from imagetransformer.layers.global_attention import GlobalSelfAttention
from imagetransformer.layers.local_attention_1d import LocalSelfAttention1D
from imagetransformer.layers.local_attention_2d import LocalSelfAttention2D

__all__ = [
    "DecoderBlock",
    "GlobalSelfAttention",
    "LocalSelfAttention1D",
    "LocalSelfAttention2D",
    "MaskedSelfAttention",
    "PixelEmbedding",
    "timing_signal_2d",
]
