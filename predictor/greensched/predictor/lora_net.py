"""The LoRA predictor's network: encoder + a head shared by all DCs, its outputs and losses, and
the partial forward pass used to train on cached activations of the frozen lower layers.

Torch is imported inside the functions (importing :mod:`greensched.predictor` never imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["N_OUT", "bare_model", "build_net", "encoder_layers", "pinball", "split_outputs"]

#: Outputs per DC: E mean, s mean, E p10/p50/p90 (3), s p10/p50/p90 (3), action logit.
N_OUT = 9


def bare_model(encoder: Any) -> Any:
    """The Hugging Face model under a peft wrapper (or the model itself)."""
    get = getattr(encoder, "get_base_model", None)
    return get() if callable(get) else encoder


def encoder_layers(encoder: Any) -> Any | None:
    """The ``ModuleList`` of transformer layers of a BERT-like encoder (``.encoder.layer``),
    or ``None`` when the model is laid out differently (then nothing is cached)."""
    model = bare_model(encoder)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    return layers if layers is not None and hasattr(model, "config") else None


def _layer_mask(model: Any, hid: torch.Tensor, mask: torch.Tensor) -> Any:
    """The attention mask the model's own forward pass would hand its layers."""
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:  # older transformers: the additive 4-D mask
        import torch

        return (1.0 - mask[:, None, None, :].to(hid.dtype)) * torch.finfo(hid.dtype).min
    return create_bidirectional_mask(config=model.config, inputs_embeds=hid,
                                     attention_mask=mask)


def build_net(encoder: Any, hidden: int, n_job: int, n_dc_feat: int, n_dc: int, width: int,
              text_dim: int, text_dropout: float, dc_identity: bool = True) -> Any:
    """Encoder + a head shared by all DCs.

    For each DC d the head sees [text summary, job features, DC d's features, one-hot(d)]
    (the one-hot only with ``dc_identity``) and returns that DC's :data:`N_OUT` outputs, where
    the text summary is the layer-normalised mean-pooled embedding projected to ``text_dim``
    values (so that hundreds of embedding dimensions do not swamp a dozen exact numbers);
    sharing the weights across DCs lets every DC learn from every other's rows.  ``num`` is
    [job features (n_job), DC features (D × n_dc_feat) flattened].

    Methods: ``pool(ids, mask)`` (full encoder pass, mean pooling), ``hidden_after(ids, mask,
    k)`` (the hidden states after the first ``k`` layers, ``k = 0``: the embeddings),
    ``pool_from(hidden, mask, k)`` (layers ``k..`` on such states, then pooling; equals
    ``pool`` exactly), ``head(pooled, num)`` and ``forward(ids, mask, num)``.
    """
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.text_proj = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, text_dim),
                                           nn.Dropout(text_dropout))
            n_in = text_dim + n_job + n_dc_feat + (n_dc if dc_identity else 0)
            self.trunk = nn.Sequential(nn.Linear(n_in, width), nn.GELU(),
                                       nn.Linear(width, width), nn.GELU())
            self.out = nn.Linear(width, N_OUT)
            nn.init.zeros_(self.out.bias)

        @staticmethod
        def _mean(hid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m = mask.unsqueeze(-1).to(hid.dtype)
            return (hid * m).sum(1) / m.sum(1).clamp(min=1.0)

        def pool(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hid = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            return self._mean(hid, mask)

        def hidden_after(self, ids: torch.Tensor, mask: torch.Tensor,
                         k: int) -> tuple[torch.Tensor, torch.Tensor]:
            """(hidden states after k layers, pooled final states) of one batch."""
            out = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            return out.hidden_states[k], self._mean(out.last_hidden_state, mask)

        def pool_from(self, hid: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
            model = bare_model(self.encoder)
            layers = encoder_layers(self.encoder)
            assert layers is not None
            ext = _layer_mask(model, hid, mask)
            for layer in layers[k:]:
                res = layer(hid, attention_mask=ext)
                hid = res[0] if isinstance(res, tuple) else res
            return self._mean(hid, mask)

        def head(self, pooled: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
            n = len(pooled)
            text = self.text_proj(pooled)
            parts = [text.unsqueeze(1).expand(n, n_dc, text_dim)]
            if n_job:
                parts.append(num[:, :n_job].unsqueeze(1).expand(n, n_dc, n_job))
            if n_dc_feat:
                parts.append(num[:, n_job:].reshape(n, n_dc, n_dc_feat))
            if dc_identity:
                onehot = torch.eye(n_dc, dtype=pooled.dtype)
                parts.append(onehot.unsqueeze(0).expand(n, n_dc, n_dc))
            o = self.out(self.trunk(torch.cat(parts, dim=2)))  # (n, D, 9)
            return o.transpose(1, 2)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                    num: torch.Tensor) -> torch.Tensor:
            return self.head(self.pool(ids, mask), num)

    return _Net()


def split_outputs(o: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw (n, 9, D) outputs → means, ordered quantiles (n, D, 3) and action logits."""
    import torch
    from torch.nn.functional import softplus

    def quant(c: int) -> torch.Tensor:
        mid = o[:, c]
        return torch.stack([mid - softplus(o[:, c + 1]), mid, mid + softplus(o[:, c + 2])], -1)

    return {"energy_kwh": o[:, 0], "service_s": o[:, 1], "energy_kwh_q": quant(2),
            "service_s_q": quant(5), "action": o[:, 8]}


def pinball(q_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean pinball loss of (…, 3) quantile predictions at levels 0.1, 0.5, 0.9."""
    import torch

    taus = torch.tensor([0.1, 0.5, 0.9], dtype=q_pred.dtype)
    diff = y.unsqueeze(-1) - q_pred
    return torch.maximum(taus * diff, (taus - 1) * diff).mean()
