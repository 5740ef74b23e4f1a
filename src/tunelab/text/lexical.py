"""The lexical blend of a text model: TF-IDF over the tokenizer's word pieces and a class-balanced
logistic regression (C by cross-validation), blended with the network's class log-probabilities.

Why: on long documents and topic-like labels, which words occur says much of the class, and a
pretrained encoder reading a few windows of each text sees less of that than a bag of words over
all of it (on the suite's convention speeches TF-IDF + logistic regression beat the fine-tuned
MiniLM by 4 points). The two make different errors, so their blend can beat both. The word pieces
are the token ids the model already reads, so the blend is part of the model: saved with it,
applied by ``predict`` and inside an ONNX / TorchScript export.

The network is sure of itself after fine-tuning and the regression, strongly regularised on few
examples, is not, so a fixed mix of their log-probabilities is the network's answer whatever the
mix. The blend therefore scales each: ``a log p_net + b log p_lex``, with (a, b) of the lowest
log-loss on the validation split (a grid, :func:`fit_scales`), unless that blend is less accurate
there than the network alone; b = 0 keeps the network alone. Where the validation texts are
separable, the log-loss falls the further both scales grow, and the grid's largest would make
every answer 100 % sure, nonsense included: a common factor on both (which changes no answer, only
how sure it is) then brings the blend's mean top probability on validation down to what its
validation accuracy supports (:func:`cap_sureness`). Its share ``b / (a + b)`` is what config.yaml
records as ``model.lexical``::

    lex = fit_lexical(train_tokens, labels, vocab_size=30522, num_classes=2, ignore=[0, 101, 102], seed=0)
    a, b, seen = fit_scales(val_logits, lex.log_probs(val_tokens), val_labels)
    model.lexical = lex.with_scales(a, b)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.engine.probe import all_classes, fit_logistic, logit_rows, stratified_sample
from tunelab.text.data import Tokens

# the scales the validation split chooses from: the network's log-probabilities may be softened
# (a < 1), the regression's sharpened (b > 1), each over three decades
NET_SCALES = (0.0, *np.round(np.logspace(-2, 1, 13), 4).tolist())
LEX_SCALES = (0.0, *np.round(np.logspace(-1, 2, 13), 4).tolist())
MAX_FIT = 5000  # examples the regression is fitted on, at most (a stratified sample above that)
MIN_FACTOR = 1e-3  # the smallest common factor :func:`cap_sureness` takes: the blend stays a blend


class LexicalBlend(nn.Module):
    """Word-piece TF-IDF (sublinear tf, smooth idf, L2 norm: scikit-learn's TfidfTransformer) and a
    linear layer on it; :meth:`blend` mixes its log-probabilities into the network's."""

    scales: torch.Tensor  # [2]
    idf: torch.Tensor  # [V]
    ignore: torch.Tensor  # bool [V]: special tokens, not counted
    coef: torch.Tensor  # [K, V]
    intercept: torch.Tensor  # [K]

    def __init__(self, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("scales", torch.tensor([1.0, 0.0]))  # a, b: the network's, the regression's
        self.register_buffer("idf", torch.zeros(vocab_size))
        self.register_buffer("ignore", torch.zeros(vocab_size, dtype=torch.bool))  # special tokens
        self.register_buffer("coef", torch.zeros(num_classes, vocab_size))
        self.register_buffer("intercept", torch.zeros(num_classes))

    def features(self, tokens: Tokens) -> torch.Tensor:
        """TF-IDF of each text [N, V]: its word pieces over all of its windows."""
        ids, mask = tokens.ids, tokens.mask.bool()
        keep = (mask & ~self.ignore[ids]).to(self.idf.dtype)
        counts = torch.zeros(ids.shape[0], self.idf.shape[0], dtype=self.idf.dtype, device=ids.device)
        counts = counts.scatter_add(1, ids, keep)
        if tokens.starts is not None:  # a text's windows together (the sum: the mean times their number)
            counts = tokens.pool_windows(counts) * tokens.counts.to(counts.device).unsqueeze(1).to(counts.dtype)
        tf = torch.where(counts > 0, 1.0 + torch.log(counts.clamp_min(1.0)), torch.zeros_like(counts))
        x = tf * self.idf
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def log_probs(self, tokens: Tokens) -> torch.Tensor:
        return (self.features(tokens) @ self.coef.T + self.intercept).log_softmax(1)

    def blend(self, logits: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        a, b = self.scales[0].to(logits.dtype), self.scales[1].to(logits.dtype)
        return a * logits.log_softmax(1) + b * self.log_probs(tokens).to(logits.dtype)

    def with_scales(self, a: float, b: float) -> LexicalBlend:
        self.scales.copy_(torch.tensor([a, b]))
        return self

    @property
    def share(self) -> float:
        """The regression's share of the blend, b / (a + b): what ``model.lexical`` records."""
        a, b = (float(x) for x in self.scales)
        return round(b / (a + b), 3) if a + b > 0 else 0.0


def count_matrix(tokens: Tokens, vocab_size: int, ignore: np.ndarray) -> Any:
    """Word-piece counts of each text (all its windows) as a sparse [N, V] matrix."""
    from scipy import sparse

    ids, mask = tokens.ids.numpy(), tokens.mask.numpy().astype(bool)
    owner = np.repeat(np.arange(len(tokens)), tokens.counts.numpy())
    rows = np.broadcast_to(owner[:, None], ids.shape)
    keep = mask & ~ignore[ids]
    return sparse.csr_matrix((np.ones(int(keep.sum())), (rows[keep], ids[keep])), shape=(len(tokens), vocab_size))


def fit_lexical(
    tokens: Tokens, labels: np.ndarray, *, vocab_size: int, num_classes: int, ignore: list[int], seed: int
) -> LexicalBlend:
    """The TF-IDF and the regression fitted on ``tokens`` (at most :data:`MAX_FIT`, stratified)."""
    from sklearn.feature_extraction.text import TfidfTransformer

    y = np.asarray(labels)
    pick = torch.as_tensor(stratified_sample(y, MAX_FIT, seed))
    skip = np.zeros(vocab_size, dtype=bool)
    skip[[i for i in ignore if 0 <= i < vocab_size]] = True
    tfidf = TfidfTransformer(sublinear_tf=True)
    x = tfidf.fit_transform(count_matrix(tokens[pick], vocab_size, skip))
    model = fit_logistic(x, y[pick.numpy()], seed)
    weight, bias = all_classes(model.classes_, *logit_rows(model), num_classes)
    lex = LexicalBlend(vocab_size, num_classes)
    lex.idf.copy_(torch.as_tensor(tfidf.idf_, dtype=torch.float32))
    lex.ignore.copy_(torch.as_tensor(skip))
    lex.coef.copy_(torch.from_numpy(weight))
    lex.intercept.copy_(torch.from_numpy(bias))
    return lex


def _scores(net: torch.Tensor, lex: torch.Tensor, labels: torch.Tensor, a: float, b: float) -> dict[str, float]:
    mixed = (a * net + b * lex).log_softmax(1)
    return {
        "net_scale": a,
        "lex_scale": b,
        "log_loss": float(nn.functional.nll_loss(mixed, labels)),
        "accuracy": float((mixed.argmax(1) == labels).float().mean()),
    }


def fit_scales(
    net_logits: torch.Tensor, lex_log_probs: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float, dict[str, dict[str, float]]]:
    """(a, b) of the lowest log-loss over :data:`NET_SCALES` x :data:`LEX_SCALES` (on a tie the
    smaller b: the network alone wins ties), both brought down by :func:`cap_sureness` where that
    blend is surer on validation than its accuracy there supports; and the scores of the network
    alone, the blend (``uncapped``: before the cap) and the regression alone at their own best scale.

    A blend less accurate than the network alone on the same examples is refused (the network is
    kept as trained, a = 1, b = 0): on a handful of validation texts the lowest log-loss
    can be a near-uniform answer, when the network is sure and wrong on one of them and the
    regression, fitted on a few dozen texts, hardly departs from the class priors. On 20 Rotten
    Tomatoes snippets a class that choice (a = 0, b = 0.1, 0.375 against the network's 0.625 on 8
    validation texts) scored 0.557 on the test set, the network alone 0.660."""
    net, lex = net_logits.float().log_softmax(1), lex_log_probs.float()
    grid = [_scores(net, lex, labels, a, b) for a in NET_SCALES for b in LEX_SCALES if a + b > 0]
    best = min(grid, key=lambda r: (round(r["log_loss"], 6), r["lex_scale"], -r["net_scale"]))
    alone = min((r for r in grid if r["lex_scale"] == 0.0), key=lambda r: r["log_loss"])
    words = min((r for r in grid if r["net_scale"] == 0.0), key=lambda r: r["log_loss"])
    seen = {"network": alone, "blend": best, "words": words}
    if best["accuracy"] < alone["accuracy"]:
        seen = {**seen, "blend": _scores(net, lex, labels, 1.0, 0.0), "refused": best}
    elif best["lex_scale"] > 0:
        factor, sureness = cap_sureness(net, lex, labels, best["net_scale"], best["lex_scale"])
        if factor < 1.0:
            a, b = factor * best["net_scale"], factor * best["lex_scale"]
            seen = {**seen, "blend": _scores(net, lex, labels, a, b), "uncapped": best, "sureness": sureness}
    return seen["blend"]["net_scale"], seen["blend"]["lex_scale"], seen


def _mean_top(net: torch.Tensor, lex: torch.Tensor, a: float, b: float) -> float:
    return float((a * net + b * lex).softmax(1).amax(1).mean())


def cap_sureness(
    net: torch.Tensor, lex: torch.Tensor, labels: torch.Tensor, a: float, b: float
) -> tuple[float, dict[str, float]]:
    """The largest common factor t <= 1 of the scales (a, b) at which the blend's mean top
    probability on the validation split is at most ``(right + 1) / (n + 2)`` (Laplace's rule of
    succession for its accuracy there: 10 of 10 right allows 0.917 on average, never 1.0), and
    what it saw. The top probability of every text grows with t, so a bisection finds it; a common
    factor leaves every text's class as it was."""
    net, lex = net.double(), lex.double()
    right = int(((a * net + b * lex).argmax(1) == labels).sum())
    bound = max((right + 1) / (len(labels) + 2), 1.0 / net.shape[1])
    before = _mean_top(net, lex, a, b)
    if before <= bound:
        return 1.0, {}
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _mean_top(net, lex, mid * a, mid * b) <= bound else (lo, mid)
    factor = max(lo, MIN_FACTOR)
    return factor, {
        "factor": factor,
        "bound": bound,
        "mean_top_before": before,
        "mean_top": _mean_top(net, lex, factor * a, factor * b),
    }


def scores_at(
    net_logits: torch.Tensor, lex_log_probs: torch.Tensor, labels: torch.Tensor, a: float, b: float
) -> dict[str, dict[str, float]]:
    """Accuracy and log-loss of the network alone, the blend at (a, b) and the regression alone."""
    net, lex = net_logits.float().log_softmax(1), lex_log_probs.float()
    return {
        "network": _scores(net, lex, labels, 1.0, 0.0),
        "blend": _scores(net, lex, labels, a, b),
        "words": _scores(net, lex, labels, 0.0, 1.0),
    }
