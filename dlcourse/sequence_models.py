"""Chapter 09's torch models for the demos: a generated reversal task, a small transformer built around
*your* ``MultiHeadAttention``, a bidirectional LSTM tagger, and the loop that trains and times them.

The transformer block is pre-norm: ``x + attention(LayerNorm(x))``, then ``x + MLP(LayerNorm(x))``. The
attention class is an argument, so the block runs the very layer you wrote (it must follow the
chapter's contract: ``forward(query, key, value, mask=None) -> (out, weights per head)``).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from .devices import synchronize
from .torch_training import progress

VOCAB = 10          # tokens 0..9


def reversal_batch(n, length, generator, device="cpu"):
    """x (n, length) random tokens, y = x reversed along time: the target at position t is x[:, length - 1 - t]."""
    x = torch.randint(0, VOCAB, (n, length), generator=generator)
    return x.to(device), x.flip(1).to(device)


def sinusoidal_encoding(length, dim):
    """(length, dim) sinusoidal positional encoding of "Attention is all you need":
    PE[t, 2i] = sin(t / 10000^(2i/dim)), PE[t, 2i+1] = cos(t / 10000^(2i/dim))."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return pe


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: attention with residual, then a two-layer MLP with residual."""

    def __init__(self, attention_class, dim, heads, hidden):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = attention_class(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x, mask=None):
        a = self.norm1(x)
        attended, weights = self.attention(a, a, a, mask)
        x = x + attended
        return x + self.mlp(self.norm2(x)), weights


class TransformerTagger(nn.Module):
    """Token embedding + sinusoidal positions, ``layers`` transformer blocks, one prediction per position."""

    def __init__(self, attention_class, dim=32, heads=2, layers=2, hidden=64, max_length=64):
        super().__init__()
        self.settings = dict(dim=dim, heads=heads, layers=layers, hidden=hidden)
        self.embed = nn.Embedding(VOCAB, dim)
        self.register_buffer("positions", sinusoidal_encoding(max_length, dim).float())
        self.blocks = nn.ModuleList(TransformerBlock(attention_class, dim, heads, hidden) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCAB)

    def describe(self):
        s = self.settings
        return (f"{s['layers']} transformer blocks, embedding size E = {s['dim']}, {s['heads']} heads, "
                f"MLP hidden size {s['hidden']}")

    def forward(self, tokens, return_weights=False):
        # Embeddings start with entries of size ~1, like the encoding: position and token weigh alike.
        x = self.embed(tokens) + self.positions[: tokens.shape[1]]
        all_weights = []
        for block in self.blocks:
            x, weights = block(x)
            all_weights.append(weights)
        logits = self.head(self.norm(x))
        return (logits, all_weights) if return_weights else logits


class LSTMTagger(nn.Module):
    """Token embedding, a bidirectional ``nn.LSTM``, one prediction per position: it also sees the whole input."""

    def __init__(self, dim=32, hidden=64, layers=1):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, VOCAB)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def token_accuracy(model, length, device, n=512, seed=1234):
    """Fraction of positions predicted right, and of whole sequences reversed without a mistake."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x, y = reversal_batch(n, length, g, device)
    right = model(x).argmax(-1) == y
    model.train()
    return float(right.float().mean()), float(right.all(dim=1).float().mean())


def train_reversal(model, length, device, *, steps=1500, batch_size=64, lr=3e-3, seed=0, desc="training"):
    """Adam on fresh random batches of the reversal task; returns a history with the wall time.

    history: {"loss": per step, "seconds": wall time of the training loop (GPU work included),
              "token_accuracy", "sequence_accuracy": on 512 fresh test sequences after training}.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, steps // 10)            # linear warm-up, then a cosine decay to 0

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    synchronize(device)
    start = time.perf_counter()
    for _ in progress(range(steps), desc=desc):
        x, y = reversal_batch(batch_size, length, g, device)
        loss = loss_fn(model(x).reshape(-1, VOCAB), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    synchronize(device)
    seconds = time.perf_counter() - start
    tok, seq = token_accuracy(model, length, device)
    return {"loss": losses, "seconds": seconds, "token_accuracy": tok, "sequence_accuracy": seq}


def compare_on_lengths(attention_class, lengths, device, steps, seed=0):
    """Train a fresh transformer and a fresh bidirectional LSTM on every length; {model: [history per length]}."""
    results = {"transformer": [], "LSTM": []}
    runs = [(length, name) for length in lengths for name in results]
    for length, name in progress(runs, desc=f"{len(runs)} models"):     # its time estimate: the whole cell
        model = TransformerTagger(attention_class, max_length=max(lengths)) if name == "transformer" \
            else LSTMTagger()
        hist = train_reversal(model, length, device, steps=steps, seed=seed, desc=f"{name}, length {length}")
        hist["parameters"] = count_parameters(model)
        results[name].append(hist)
    return results


def plot_comparison(lengths, results):
    """Accuracy against sequence length (left) and training time (right) for the two models."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (name, hists), color in zip(results.items(), ["tab:blue", "tab:orange", "tab:green"]):
        ax1.plot(lengths, [h["token_accuracy"] for h in hists], "o-", color=color, label=f"{name}: digits")
        ax1.plot(lengths, [h["sequence_accuracy"] for h in hists], "s--", color=color,
                 label=f"{name}: whole sequences")
        ax2.plot(lengths, [h["seconds"] for h in hists], "o-", color=color, label=name)
    ax1.set(title="Reversal accuracy on fresh sequences", xlabel="sequence length", ylabel="accuracy",
            ylim=(-0.02, 1.02))
    ax2.set(title="Training time", xlabel="sequence length", ylabel="seconds")
    ax1.legend(fontsize=8, loc="center right")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_attention_maps(weights, tokens, title="Attention weights"):
    """weights: list (one per layer) of (heads, L, L) arrays for one sequence; tokens: its L input tokens."""
    import matplotlib.pyplot as plt

    layers, heads = len(weights), weights[0].shape[0]
    fig, axes = plt.subplots(layers, heads, figsize=(max(6.5, 2.8 * heads), 3.0 * layers + 0.5), squeeze=False)
    labels = [str(int(t)) for t in tokens]
    for l, layer in enumerate(weights):
        for h in range(heads):
            ax = axes[l, h]
            ax.imshow(np.asarray(layer[h]), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"layer {l + 1}, head {h + 1}", fontsize=9)
            ax.set_xticks(range(len(labels)), labels, fontsize=6)
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
            if h == 0:
                ax.set_ylabel("query position (token)", fontsize=8)
            if l == layers - 1:
                ax.set_xlabel("key position (token)", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


# --- attention where it began: an RNN encoder and a decoder that attends over its states -----------------------

START, END = VOCAB, VOCAB + 1      # the decoder's extra tokens: "start writing" (its first input) and "done"


def token_name(token):
    """'7' for a digit, '<s>' and '</s>' for the decoder's start and end tokens."""
    return {START: "<s>", END: "</s>"}.get(int(token), str(int(token)))


def seq2seq_reversal_batch(n, length, generator, device="cpu"):
    """src (n, length) random digits; target (n, length + 1): src reversed, then END.

    The decoder writes length + 1 tokens while the encoder read length: queries and keys differ in number.
    """
    src = torch.randint(0, VOCAB, (n, length), generator=generator)
    target = torch.cat([src.flip(1), torch.full((n, 1), END)], dim=1)
    return src.to(device), target.to(device)


class AttentionSeq2Seq(nn.Module):
    """An LSTM encoder and an LSTM decoder that attends over the encoder's states with *your* attention.

    The encoder (bidirectional, so each state describes its digit and where it stands) reads the source
    and keeps every state: keys and values. At each output step the decoder's state asks a query; your
    ``attention(query, keys, values)`` returns a context, the weighted average of the encoder states, and
    the next token is predicted from the decoder state and the context together (Luong et al., 2015).
    ``attention``: a function (q, k, v, mask=None) -> (out, weights), e.g. your scaled_dot_product_attention.
    """

    def __init__(self, attention, dim=32, hidden=64):
        super().__init__()
        self.attention = attention
        self.src_embed = nn.Embedding(VOCAB, dim)
        self.tgt_embed = nn.Embedding(VOCAB + 2, dim)           # digits, START, END
        self.encoder = nn.LSTM(dim, hidden // 2, batch_first=True, bidirectional=True)
        self.decoder = nn.LSTM(dim, hidden, batch_first=True)
        self.query, self.key = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, VOCAB + 2))

    def encode(self, src):
        states, _ = self.encoder(self.src_embed(src))            # (N, Lk, hidden)
        return states, self.key(states)

    def attend_and_predict(self, decoder_states, states, keys):
        context, weights = self.attention(self.query(decoder_states), keys, states)   # (N, Lq, hidden), (N, Lq, Lk)
        return self.out(torch.cat([decoder_states, context], dim=-1)), weights

    def forward(self, src, target):
        """Teacher forcing: the decoder reads START and the true previous tokens. Returns (logits, weights)."""
        states, keys = self.encode(src)
        start = torch.full_like(target[:, :1], START)
        decoder_states, _ = self.decoder(self.tgt_embed(torch.cat([start, target[:, :-1]], dim=1)))
        return self.attend_and_predict(decoder_states, states, keys)

    @torch.no_grad()
    def generate(self, src, steps):
        """Greedy decoding: each output token is fed back as the next input. Returns (tokens, weights)."""
        states, keys = self.encode(src)
        token, memory = torch.full_like(src[:, :1], START), None
        tokens, weights = [], []
        for _ in range(steps):
            decoder_state, memory = self.decoder(self.tgt_embed(token), memory)
            logits, w = self.attend_and_predict(decoder_state, states, keys)
            token = logits.argmax(-1)
            tokens.append(token)
            weights.append(w)
        return torch.cat(tokens, dim=1), torch.cat(weights, dim=1)


def train_seq2seq(model, length, device, *, steps=800, batch_size=64, lr=3e-3, seed=0, desc="encoder-decoder"):
    """Adam on fresh reversal batches with teacher forcing; accuracy measured by greedy decoding.

    history: {"loss", "seconds", "token_accuracy", "sequence_accuracy"} (on 512 fresh test sequences).
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    synchronize(device)
    start = time.perf_counter()
    for _ in progress(range(steps), desc=desc):
        src, target = seq2seq_reversal_batch(batch_size, length, g, device)
        logits, _ = model(src, target)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    synchronize(device)
    seconds = time.perf_counter() - start
    model.eval()
    src, target = seq2seq_reversal_batch(512, length, torch.Generator().manual_seed(1234), device)
    tokens, _ = model.generate(src, length + 1)
    model.train()
    right = tokens == target
    return {"loss": losses, "seconds": seconds, "token_accuracy": float(right.float().mean()),
            "sequence_accuracy": float(right.all(dim=1).float().mean())}


def plot_alignment(weights, src_tokens, out_tokens, title="Where the decoder looked"):
    """One (Lq, Lk) cross-attention matrix as an alignment: rows the tokens written, columns the tokens read."""
    import matplotlib.pyplot as plt

    w = np.asarray(weights)
    fig, ax = plt.subplots(figsize=(0.5 * w.shape[1] + 3.0, 0.4 * w.shape[0] + 1.5))
    image = ax.imshow(w, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(w.shape[1]), [token_name(t) for t in src_tokens], fontsize=8)
    ax.set_yticks(range(w.shape[0]), [token_name(t) for t in out_tokens], fontsize=8)
    ax.set(title=title, xlabel="encoder position (the digit read)", ylabel="decoder step (the token written)")
    fig.colorbar(image, ax=ax, label="attention weight")
    fig.tight_layout()
    return fig
