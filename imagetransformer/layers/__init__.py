"""Keras layers of the Image Transformer (embedding, the three attention variants, the decoder block), its
conditioners (`ClassConditioner`; the super-resolution `LowResEncoder` with its low-resolution embedding, encoder
blocks and the decoder's cross-attention) and of the PixelCNN++ baseline (shifted convolutions, the gated residual
block)."""

from imagetransformer.layers.attention import MaskedSelfAttention
from imagetransformer.layers.causal_conv_stem import CausalConvStem
from imagetransformer.layers.class_conditioner import ClassConditioner
from imagetransformer.layers.cross_attention import CrossAttention
from imagetransformer.layers.decoder_block import DecoderBlock
from imagetransformer.layers.gated_resnet import GatedResnet
from imagetransformer.layers.embedding import PixelEmbedding, timing_signal_2d
from imagetransformer.layers.encoder_block import EncoderBlock
from imagetransformer.layers.global_attention import GlobalSelfAttention
from imagetransformer.layers.local_attention_1d import LocalSelfAttention1D
from imagetransformer.layers.local_attention_2d import LocalSelfAttention2D
from imagetransformer.layers.low_res_embedding import LowResEmbedding
from imagetransformer.layers.low_res_encoder import LowResEncoder
from imagetransformer.layers.shifted_conv import ShiftedConv2D, ShiftedConv2DTranspose

__all__ = [
    "CausalConvStem",
    "ClassConditioner",
    "CrossAttention",
    "DecoderBlock",
    "EncoderBlock",
    "GatedResnet",
    "GlobalSelfAttention",
    "LocalSelfAttention1D",
    "LocalSelfAttention2D",
    "LowResEmbedding",
    "LowResEncoder",
    "MaskedSelfAttention",
    "PixelEmbedding",
    "ShiftedConv2D",
    "ShiftedConv2DTranspose",
    "timing_signal_2d",
]
