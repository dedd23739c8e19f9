"""The shapes model: transformers' JanusForConditionalGeneration at small widths, and its training losses.

The joint loss runs both kinds of rows through the language model in one call: understanding rows embed their
tokens and put the vision tower's features (SigLIP + aligner) at the image placeholders, as the model does for
a prompt with an image; generation rows embed their prompt and feed the image's codes back through the
generation embeddings and aligner, and the generation head predicts each code from the position before it.
"""

import torch
import torch.nn.functional as F
from transformers import JanusForConditionalGeneration

from janusweb.export.presets import Shapes, janus_config
from janusweb.train.data import IGNORE, Batch


def build(shapes: Shapes, token_ids: dict, seed: int) -> JanusForConditionalGeneration:
    """A model with transformers' own initialisation, seeded; fp32, in train mode. The VQ's layers start from
    PyTorch's defaults instead (its N(0, 0.02) convolutions fitted a batch of task images half as fast)."""
    torch.manual_seed(seed)
    config = janus_config(shapes, token_ids)
    config._attn_implementation = "sdpa"
    model = JanusForConditionalGeneration(config)
    for module in model.model.vqmodel.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.Embedding)):
            module.reset_parameters()
    return model.train()


def joint_loss(model: JanusForConditionalGeneration, batch: Batch, unconditional_smoothing: float = 0.0) -> tuple:
    """(text loss on the answers, image loss on the codes). The unconditional rows' targets are label-smoothed by
    `unconditional_smoothing`: guidance g samples from cond + (g - 1)(cond - uncond), so a code the unconditional
    row rules out more firmly than the conditioned one is pushed up (g - 1) times that gap. Trained on the few
    dropped rows alone, the unconditional row's rare codes sat far below the conditioned row's by chance, and
    guidance 5 drew them (48 % of seen prompts right against 95 % at guidance 1); a smoothed unconditional row
    keeps every code at a floor above the conditioned row's own, which guidance then pushes down, as it should."""
    U, T = batch.understanding_rows, batch.codes.shape[1]
    embeds = model.get_input_embeddings()(batch.input_ids)
    features = model.model.get_image_features(batch.pixels.flatten(0, 1)).pooler_output
    embeds = embeds.masked_scatter(batch.image_positions[..., None], features.reshape(-1, embeds.shape[-1]))
    fed = model.prepare_embeddings_for_image_generation(batch.codes[:, :-1])
    embeds = torch.cat([embeds[:U], torch.cat([embeds[U:, :-(T - 1)], fed], 1)])
    positions = (batch.attention_mask.cumsum(1) - 1).clamp(min=0)
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                                        position_ids=positions).last_hidden_state
    logits = model.lm_head(hidden[:U, :-1])
    text = F.cross_entropy(logits.flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=IGNORE)
    image_logits = model.model.generation_head(hidden[U:, -T:])
    image_logits = image_logits.transpose(1, 2)  # [G, codebook, T]
    plain = F.cross_entropy(image_logits, batch.codes, reduction="none")
    smoothed = F.cross_entropy(image_logits, batch.codes, reduction="none", label_smoothing=unconditional_smoothing)
    image = torch.where(batch.drops[:, None], smoothed, plain).mean()
    return text, image
