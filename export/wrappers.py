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
        # The checks tell torch.export that the crop has exactly `size` rows and columns (older torch cannot
        # prove it and fails on the convolution that follows).
        torch._check(pixel_values.shape[-1] >= size)
        torch._check(pixel_values.shape[-2] >= size)
        pixels = pixel_values[:, :, :, :size, :size].flatten(0, 1)
        features = self.model.aligner(self.model.vision_model(pixels).last_hidden_state)
        features = features.reshape(-1, hidden)
        # The k-th selected feature row goes to the k-th marked position. A one-hot matching matrix does the
        # scatter with static shapes (exact in float: each output row sums one feature row and zeros).
        # images_emb_mask has one flag per feature row; transformers.js sends [1, 1, 0] on text steps with no
        # image, so its token axis is dynamic and the flags are fitted to the rows present (padded or cut).
        rows = features.shape[0]
        emb_mask = torch.cat([images_emb_mask.reshape(-1), images_emb_mask.new_zeros(rows)])[:rows]
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
        # the two modules of `prepare_embeddings_for_image_generation`, held alone so that the graph (and
        # its size check) holds only their weights
        self.embeddings = model.model.generation_embeddings
        self.aligner = model.model.generation_aligner

    def forward(self, image_ids):
        return self.aligner(self.embeddings(image_ids))


class ImageDecode(nn.Module):
    """generated_tokens [B, T] -> decoded_image [B, 3, H, W] in [-1, 1] (the VQ decoder, clipped)."""

    def __init__(self, model: JanusForConditionalGeneration):
        super().__init__()
        self.vq = model.model.vqmodel

    def forward(self, generated_tokens):
        return self.vq.decode(generated_tokens).clamp(-1.0, 1.0)


class GenStep(nn.Module):
    """One image-generation step kept on the device (the page's loop reads nothing back per step).

    hidden_states [2,n,S,H] (the language model's [2n,S,H] output viewed as [conditional, unconditional]; the
    last position is used), draws [n,T] (all uniform draws of the run), guidance [1], temperature [1],
    tokens [n,T] (the ids so far, float32), step [1] (float32: the column of draws to use and of tokens to fill)
    -> image_ids [n,1] int64, inputs_embeds [2n,1,H] (the next step's input, both halves), tokens_out [n,T]
    (float32, the next step's `tokens`), image_tokens [n,T] int64 (tokens_out for image_decode).

    The rule is janusweb.sampling's: CFG logits uncond + g * (cond - uncond), then the first index whose
    cumulative probability exceeds u * total (temperature <= 0: the first argmax, as the same count over the
    indicator of the maximum with u = 0). Ids stay float32 (exact below 2**24) until the final casts, because
    WebGPU kernels for Concat/Where/compare on int64 are missing and would move those nodes to the CPU.
    """

    def __init__(self, model: JanusForConditionalGeneration):
        super().__init__()
        self.head = model.model.generation_head
        self.model = model

    def forward(self, hidden_states, draws, guidance, temperature, tokens, step):
        steps = draws.shape[1]
        logits = self.head(hidden_states[:, :, -1])
        cond, uncond = logits[0], logits[1]
        z = uncond + guidance * (cond - uncond)
        column = (torch.arange(steps, device=draws.device).to(draws.dtype) == step).to(draws.dtype)  # [T]
        u = (draws * column).sum(-1, keepdim=True)  # [n,1]
        greedy = temperature <= 0
        z = z / torch.where(greedy, torch.ones_like(temperature), temperature)
        top = z.max(-1, keepdim=True).values
        p = torch.where(greedy, (z == top).to(z.dtype), torch.exp(z - top))
        cdf = torch.cumsum(p, -1)
        threshold = torch.where(greedy, torch.zeros_like(u), u) * cdf[:, -1:]
        last = torch.full_like(u, z.shape[-1] - 1)
        index = torch.minimum((cdf <= threshold).to(z.dtype).sum(-1, keepdim=True), last)  # [n,1]
        embeds = self.model.prepare_embeddings_for_image_generation(torch.cat([index, index]).to(torch.int64))
        tokens_out = tokens + column * (index - tokens)  # exact: column is 0 or 1
        return index.to(torch.int64), embeds, tokens_out, tokens_out.to(torch.int64)
