"""One small nn.Module per exported graph, each calling transformers' own Janus modules.

The wrappers only rearrange inputs and outputs into the flat tensors ONNX needs; the model code is
transformers' `JanusForConditionalGeneration`.
"""

import torch
from torch import nn
from transformers import DynamicCache, JanusForConditionalGeneration


class PrepareInputsEmbeds(nn.Module):
    """input_ids [B,S], pixel_values [B,N,3,H,W], images_seq_mask [B,S], images_emb_mask [B,N,T] -> inputs_embeds.

    Token embedding, then SigLIP + aligner features scattered into the positions that images_seq_mask marks,
    in the order images_emb_mask selects them (DeepSeek's `prepare_inputs_embeds`). An empty pixel_values
    (N = 0, any H and W) is a text-only step.
    """

    def __init__(self, model: JanusForConditionalGeneration):
        super().__init__()
        self.model = model.model
        self.image_size = model.config.vision_config.image_size

    def forward(self, input_ids, pixel_values, images_seq_mask, images_emb_mask):
        embeds = self.model.language_model.embed_tokens(input_ids)
        hidden = embeds.shape[-1]
        size = self.image_size
        # A crop that is a no-op for real images; it lets an empty [0,0,3,384,384] pass whatever the image size.
        pixels = pixel_values[:, :, :, :size, :size].flatten(0, 1)
        features = self.model.aligner(self.model.vision_model(pixels).last_hidden_state)
        features = features.reshape(-1, hidden)
        # The k-th selected feature row goes to the k-th marked position. A one-hot matching matrix does the
        # scatter with static shapes (exact in float: each output row sums one feature row and zeros).
        emb_mask = images_emb_mask.reshape(-1)
        seq_mask = images_seq_mask.reshape(-1)
        emb_rank = torch.cumsum(emb_mask.to(torch.int64), 0)
        seq_rank = torch.cumsum(seq_mask.to(torch.int64), 0)
        match = (seq_rank.unsqueeze(1) == emb_rank.unsqueeze(0)) & seq_mask.unsqueeze(1) & emb_mask.unsqueeze(0)
        scattered = (match.to(features.dtype) @ features).reshape(embeds.shape)
        return torch.where(images_seq_mask.unsqueeze(-1), scattered, embeds)


class LanguageModel(nn.Module):
    """inputs_embeds, attention_mask, position_ids, past_key_values.{i}.key/value -> hidden_states, present.{i}.*"""

    def __init__(self, model: JanusForConditionalGeneration):
        super().__init__()
        self.lm = model.model.language_model
        self.num_layers = model.config.text_config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(self.num_layers)])
        out = self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                      past_key_values=cache, use_cache=True)
        presents = []
        for layer in out.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (out.last_hidden_state, *presents)


class LmHead(nn.Module):
    """hidden_states -> logits over the text vocabulary."""

    def __init__(self, model: JanusForConditionalGeneration):
        super().__init__()
        self.head = model.lm_head

    def forward(self, hidden_states):
        return self.head(hidden_states)


class GenHead(nn.Module):
    """hidden_states -> logits over the image codebook."""

    def __init__(self, model: JanusForConditionalGeneration):
        super().__init__()
        self.head = model.model.generation_head

    def forward(self, hidden_states):
        return self.head(hidden_states)


class GenImgEmbeds(nn.Module):
    """image_ids -> inputs_embeds (codebook embedding + generation aligner)."""

    def __init__(self, model: JanusForConditionalGeneration):
        super().__init__()
        self.model = model

    def forward(self, image_ids):
        return self.model.prepare_embeddings_for_image_generation(image_ids)


class ImageDecode(nn.Module):
    """generated_tokens [B, T] -> decoded_image [B, 3, H, W] in [-1, 1] (the VQ decoder, clipped)."""

    def __init__(self, model: JanusForConditionalGeneration):
        super().__init__()
        self.vq = model.model.vqmodel

    def forward(self, generated_tokens):
        return self.vq.decode(generated_tokens).clamp(-1.0, 1.0)
