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


def joint_loss(model: JanusForConditionalGeneration, batch: Batch) -> tuple:
    """(text loss on the answers, image loss on the codes)."""
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
    image = F.cross_entropy(image_logits.flatten(0, 1), batch.codes.flatten())
    return text, image
