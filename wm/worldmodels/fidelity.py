"""How well a dream agrees with the real environment: the measures behind `wm fidelity`.

Symbols: z a VAE latent [.., latent]; a an MDN-RNN action input [.., action]; h, c the LSTM state;
tau the temperature of the dream's samples; k the last real step an open-loop prediction reads;
j its horizon (steps predicted ahead).

1. Dream against real, per policy. A policy (the environment's random process, a constant action,
   a trained controller) plays N real episodes and N dreams under the training rules. Compared:
   the mean and spread of episode lengths and returns, the ratio dream / real of the mean lengths,
   and a two-sample Kolmogorov-Smirnov test of the two length distributions (`ks_two_sample`).
2. Open-loop prediction (`open_loop`). The MDN-RNN reads the real z_0 .. z_k of a held-out
   episode, then runs on its own samples (drawn at tau) with the recorded actions. At horizon j
   it is scored on the real z_{k+j} (negative log-likelihood per latent dimension under its
   untempered mixture) and on the real done_{k+j-1} (ROC AUC of its done head). Horizon 1 is the
   one-step held-out metric of `wm train-mdnrnn`; larger horizons show how errors compound in a
   dream, which one-step metrics cannot see. Beside it, the copy baseline z_{k+j} ~ N(z_k, s_j^2)
   with s_j fitted on the same pairs (the best "nothing moves" can do at that horizon).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from wm import rng
from wm.io.artifact import open_artifact
from wm.rng import key_from_seed, numpy_fold_in, seed_sequence
from wm.tfsetup import tensorflow

# --- dream against real ------------------------------------------------------------------------


def kolmogorov_survival(x: float, terms: int = 100) -> float:
    """P(K > x) for the Kolmogorov distribution: 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2) (1 for x <= 0)."""
    if x <= 0:
        return 1.0
    k = np.arange(1, terms + 1)
    value = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * x**2))
    return float(min(max(value, 0.0), 1.0))


def ks_two_sample(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test: (D, p).

    D = max_x |F_a(x) - F_b(x)| over the pooled sample points (empirical CDFs, right-continuous);
    p = P(K > sqrt(n m / (n + m)) D), the asymptotic two-sided p-value. NaN for an empty sample.
    """
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    effective = len(a) * len(b) / (len(a) + len(b))
    return statistic, kolmogorov_survival(math.sqrt(effective) * statistic)


@dataclass
class PolicyComparison:
    """One policy's real episodes and dreams: lengths and returns, one entry per episode."""

    name: str
    real_length: np.ndarray
    real_return: np.ndarray
    dream_length: np.ndarray
    dream_return: np.ndarray

    def summary(self) -> dict[str, float]:
        """Means and standard deviations, the dream / real ratio of mean lengths, and the KS test of the lengths."""
        statistic, p_value = ks_two_sample(self.real_length, self.dream_length)
        real_mean, dream_mean = float(np.mean(self.real_length)), float(np.mean(self.dream_length))
        return {
            "real_length_mean": real_mean, "real_length_std": float(np.std(self.real_length)),
            "dream_length_mean": dream_mean, "dream_length_std": float(np.std(self.dream_length)),
            "real_return_mean": float(np.mean(self.real_return)), "real_return_std": float(np.std(self.real_return)),
            "dream_return_mean": float(np.mean(self.dream_return)), "dream_return_std": float(np.std(self.dream_return)),
            "length_ratio": dream_mean / real_mean if real_mean > 0 else float("nan"),
            "ks_statistic": statistic, "ks_p_value": p_value,
        }


def policy_group(name: str) -> str:
    """The artifact group of a policy's episodes: `policy/always_left`."""
    return "policy/" + name.replace(" ", "_")


def fidelity_report(path: Any) -> str:
    """The table of a fidelity artifact: dream against real per policy, then open-loop scores per horizon."""
    with open_artifact(path, "fidelity") as artifact:
        rules = artifact.json_attr("rules_json")
        summaries = artifact.json_attr("summary_json")
        open_loop_rows = artifact.json_attr("open_loop_json")
        episodes = int(artifact.attr("episodes"))
        env_id = artifact.attr("env_id")
    death = {"threshold": f"death when p > {rules['done_threshold']:g}", "sample": "death sampled with p",
             "none": "no death"}[rules["done"]]
    lines = [f"Fidelity of the {env_id} dream (tau {rules['temperature']:g}, {death}, cap {rules['max_steps']} steps): "
             f"{episodes} real episodes and {episodes} dreams per policy",
             f"{'policy':<16}{'real length':>18}{'dream length':>18}{'dream/real':>12}{'KS D':>7}{'p':>10}"]
    same_returns = True
    for name, s in summaries.items():
        lines.append(f"{name:<16}{s['real_length_mean']:>9.1f} ± {s['real_length_std']:<6.1f}{s['dream_length_mean']:>9.1f} ± "
                     f"{s['dream_length_std']:<6.1f}{s['length_ratio']:>12.2f}{s['ks_statistic']:>7.2f}{s['ks_p_value']:>10.1e}")
        same_returns &= math.isclose(s["real_return_mean"], s["real_length_mean"], rel_tol=1e-6) and \
            math.isclose(s["dream_return_mean"], s["dream_length_mean"], rel_tol=1e-6)
    if not same_returns:
        lines.append(f"{'policy':<16}{'real return':>18}{'dream return':>18}")
        lines += [f"{name:<16}{s['real_return_mean']:>9.1f} ± {s['real_return_std']:<6.1f}{s['dream_return_mean']:>9.1f} ± {s['dream_return_std']:<6.1f}"
                  for name, s in summaries.items()]
    lines.append("Open-loop prediction on held-out real episodes of the random process (the model reads k real steps, then its own samples):")
    lines.append(f"{'horizon':>8}{'NLL/dim':>10}{'copy baseline':>15}{'death AUC':>11}{'pairs':>9}{'deaths':>8}{'predicted':>11}")
    for j, row in open_loop_rows.items():
        lines.append(f"{j:>8}{row['nll']:>10.3f}{row['copy_nll']:>15.3f}{row['done_auc']:>11.3f}{row['transitions']:>9}{row['deaths']:>8}"
                     f"{row.get('predicted_deaths', float('nan')):>11.1f}")
    if "controller" in summaries and "random" in summaries:  # every policy meets the same real seeds
        c, r = summaries["controller"], summaries["random"]
        lines.append(f"On the same {episodes} real episodes the controller returns {c['real_return_mean']:.1f} ± {c['real_return_std']:.1f}, "
                     f"the random process {r['real_return_mean']:.1f} ± {r['real_return_std']:.1f}.")
    return "\n".join(lines)


# --- open-loop prediction ----------------------------------------------------------------------


@dataclass
class HeldOutEpisode:
    """A real episode as the MDN-RNN reads it."""

    z: np.ndarray  # [T, latent] float32, sampled from q(z | x)
    action: np.ndarray  # [T, action] float32 MDN-RNN inputs
    done: np.ndarray  # [T] bool: the episode terminated after action t


@dataclass
class OpenLoopResult:
    """Scores per horizon j = 1 .. H (index j - 1)."""

    horizon: np.ndarray  # [H] int
    nll: np.ndarray  # [H] nats per latent dimension, mean over the scored transitions
    copy_nll: np.ndarray  # [H] the copy baseline N(z_k, s_j^2)
    done_auc: np.ndarray  # [H] ROC AUC of the done head (NaN without one, or without both classes)
    transitions: np.ndarray  # [H] scored (k, j) pairs with a real z_{k+j}
    done_steps: np.ndarray  # [H] scored (k, j) pairs with a real done_{k+j-1}
    deaths: np.ndarray  # [H] how many of those are deaths
    predicted_deaths: np.ndarray  # [H] the sum of the head's calibrated death probabilities over the same pairs

    def at(self, j: int) -> dict[str, float]:
        """The scores at horizon j."""
        i = j - 1
        return {"nll": float(self.nll[i]), "copy_nll": float(self.copy_nll[i]), "done_auc": float(self.done_auc[i]),
                "transitions": int(self.transitions[i]), "deaths": int(self.deaths[i]),
                "predicted_deaths": float(self.predicted_deaths[i])}


def teacher_forced_states_fn(mdnrnn: Any) -> Any:
    """Compiled: (z [T, latent], a [T, action]) of one episode -> the LSTM state (h, c) [T, units] before each step is read."""
    tf = tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None, None], tf.float32)], jit_compile=False)
    def states(z, action):
        def body(state, inputs):
            _, new_state = mdnrnn.lstm.cell(tf.concat([inputs[0][None], inputs[1][None]], axis=-1), list(state))
            return tuple(new_state)

        zero = tuple(mdnrnn.initial_state(1))
        after = tf.scan(body, (z, action), initializer=zero)  # the state after reading step t, [T, 1, units] each
        return [tf.concat([zero[i], after[i][:-1, 0]], axis=0) for i in range(2)]

    return states


def _open_loop_batch_fn(mdnrnn: Any, horizon: int) -> Any:
    """Compiled: from states (h, c) [R, units] and real z_k [R, latent], run `horizon` steps on the model's own samples."""
    from wm.worldmodels import mixture
    from wm.worldmodels.dream.batched import STREAM_COMPONENT, STREAM_NOISE

    tf = tensorflow()
    spec = [
        tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None, horizon, None], tf.float32), tf.TensorSpec([None, horizon, None], tf.float32),
        tf.TensorSpec([], tf.float32), tf.TensorSpec([None, 2], tf.uint32),
    ]
    latent_dim, mixtures = int(mdnrnn.latent_dim), int(mdnrnn.num_mixtures)

    @tf.function(input_signature=spec, jit_compile=False)
    def run(h, c, z, actions, targets, temperature, keys):
        nll, done = [], []
        state = [h, c]
        for j in range(horizon):
            heads, state = mdnrnn.step(z, actions[:, j], state)
            nll.append(-tf.reduce_mean(mixture.log_prob(targets[:, j], heads["logits"], heads["mu"], heads["log_sigma"]), axis=-1))
            done.append(heads["done_logit"] if "done_logit" in heads else tf.zeros_like(nll[-1]))
            # Each row's draws come from its own key (wm.rng), so results do not depend on how rows are batched.
            uniform = rng.uniform(keys, j, STREAM_COMPONENT, (latent_dim, mixtures))
            noise = rng.normal(keys, j, STREAM_NOISE, (latent_dim,))
            z = mixture.sample_from_noise(heads["logits"], heads["mu"], heads["log_sigma"], temperature, uniform, noise)
        return tf.stack(nll, axis=1), tf.stack(done, axis=1)  # [R, horizon] each

    return run


@dataclass
class RowBatch:
    """Open-loop rows (episode, k) gathered for one compiled call, with what each is scored on."""

    h: np.ndarray  # [R, units] the state before z_k is read
    c: np.ndarray
    z_k: np.ndarray  # [R, latent] the last real z read
    actions: np.ndarray  # [R, H, action] a_k .. a_{k+H-1} (zeros past the episode)
    targets: np.ndarray  # [R, H, latent] z_{k+1} .. z_{k+H}
    has_target: np.ndarray  # [R, H] bool
    done_label: np.ndarray  # [R, H] done_k .. done_{k+H-1}
    has_done: np.ndarray  # [R, H] bool
    keys: np.ndarray  # [R, 2] uint32: each row's own random key


class OpenLoop:
    """Open-loop prediction of one MDN-RNN over a set of episodes (see the module docstring)."""

    def __init__(self, mdnrnn: Any, episodes: Sequence[HeldOutEpisode], horizon: int, temperature: float, seed: int):
        self.mdnrnn, self.episodes, self.horizon, self.temperature = mdnrnn, episodes, horizon, float(temperature)
        self.base_key = key_from_seed(seed_sequence(seed))[None]
        self._run = _open_loop_batch_fn(mdnrnn, horizon)
        self._states_of = teacher_forced_states_fn(mdnrnn)
        self._states: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def states(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """Episode e's teacher-forced states (h, c) [T, units] (only the latest episodes are kept)."""
        if e not in self._states:
            if len(self._states) > 8:
                self._states.clear()
            h, c = self._states_of(self.episodes[e].z, self.episodes[e].action)
            self._states[e] = (h.numpy(), c.numpy())
        return self._states[e]

    def gather(self, rows: Sequence[tuple[int, int]]) -> RowBatch:
        """The inputs and targets of rows (episode, k)."""
        horizon, n = self.horizon, len(rows)
        first = self.episodes[0]
        latent_dim, action_dim = first.z.shape[1], first.action.shape[1]
        batch = RowBatch(
            h=np.stack([self.states(e)[0][k] for e, k in rows]), c=np.stack([self.states(e)[1][k] for e, k in rows]),
            z_k=np.stack([self.episodes[e].z[k] for e, k in rows]),
            actions=np.zeros((n, horizon, action_dim), np.float32), targets=np.zeros((n, horizon, latent_dim), np.float32),
            has_target=np.zeros((n, horizon), bool), done_label=np.zeros((n, horizon), bool), has_done=np.zeros((n, horizon), bool),
            keys=numpy_fold_in(numpy_fold_in(np.repeat(self.base_key, n, axis=0), [e for e, _ in rows]), [k for _, k in rows]),
        )
        for i, (e, k) in enumerate(rows):
            episode = self.episodes[e]
            steps = min(horizon, len(episode.z) - k)  # actions a_k .. a_{k+steps-1} exist
            batch.actions[i, :steps] = episode.action[k : k + steps]
            batch.done_label[i, :steps] = episode.done[k : k + steps]
            batch.has_done[i, :steps] = True
            targets = min(horizon, len(episode.z) - 1 - k)  # z_{k+1} .. z_{k+targets} exist
            batch.targets[i, :targets] = episode.z[k + 1 : k + 1 + targets]
            batch.has_target[i, :targets] = True
        return batch

    def score(self, batch: RowBatch) -> tuple[np.ndarray, np.ndarray]:
        """(NLL per latent dimension, done logit), each [R, H], of the rows in `batch`."""
        nll, done = self._run(batch.h, batch.c, batch.z_k, batch.actions, batch.targets, np.float32(self.temperature), batch.keys)
        return nll.numpy(), done.numpy()


def open_loop(mdnrnn: Any, episodes: Sequence[HeldOutEpisode], horizon: int, temperature: float, seed: int,
              *, stride: int = 1, rows_per_batch: int = 2048) -> OpenLoopResult:
    """Open-loop scores at horizons 1 .. `horizon` over every start k = 0, stride, 2 stride, ... of every episode.

    Row (episode, k): the MDN-RNN reads the real z_0 .. z_k with their actions, then its own samples
    z^_{k+1}, z^_{k+2}, ... (drawn at `temperature`) with the recorded actions a_{k+1}, .... At horizon j
    the row is scored on the real z_{k+j} if it exists and on the real done_{k+j-1}.
    """
    from wm.worldmodels.losses import roc_auc

    scorer = OpenLoop(mdnrnn, episodes, horizon, temperature, seed)
    latent_dim = episodes[0].z.shape[1]
    rows = [(e, k) for e, episode in enumerate(episodes) for k in range(0, len(episode.z), stride)]
    nll_sum, copy_sq = np.zeros(horizon), np.zeros((horizon, latent_dim))
    transitions, done_steps, deaths = np.zeros(horizon, np.int64), np.zeros(horizon, np.int64), np.zeros(horizon, np.int64)
    predicted_deaths = np.zeros(horizon)
    log_weight = math.log(float(getattr(mdnrnn, "done_weight", 1.0)))
    scores: list[list[np.ndarray]] = [[] for _ in range(horizon)]
    labels: list[list[np.ndarray]] = [[] for _ in range(horizon)]
    for begin in range(0, len(rows), rows_per_batch):
        batch = scorer.gather(rows[begin : begin + rows_per_batch])
        nll, done = scorer.score(batch)
        for j in range(horizon):
            mask, scored = batch.has_target[:, j], batch.has_done[:, j]
            nll_sum[j] += nll[mask, j].sum()
            copy_sq[j] += np.square(batch.targets[mask, j] - batch.z_k[mask]).sum(axis=0)
            transitions[j] += int(mask.sum())
            scores[j].append(done[scored, j])
            labels[j].append(batch.done_label[scored, j])
            done_steps[j] += int(scored.sum())
            deaths[j] += int(batch.done_label[scored, j].sum())
            predicted_deaths[j] += float((1.0 / (1.0 + np.exp(log_weight - done[scored, j]))).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_nll = nll_sum / transitions
        copy_nll = (0.5 * np.log(2.0 * np.pi * np.e * copy_sq / transitions[:, None])).mean(axis=1)
    has_done_head = bool(getattr(mdnrnn, "done_head", False))
    auc = np.array([roc_auc(np.concatenate(scores[j]), np.concatenate(labels[j])) if has_done_head else float("nan") for j in range(horizon)])
    if not has_done_head:
        predicted_deaths[:] = np.nan
    return OpenLoopResult(np.arange(1, horizon + 1), mean_nll, copy_nll, auc, transitions, done_steps, deaths, predicted_deaths)


# --- the picture -------------------------------------------------------------------------------


def plot_fidelity(comparisons: Sequence[PolicyComparison], result: OpenLoopResult | None, path: Any, title: str) -> None:
    """Left: real against dream episode lengths per policy (box plots); right: open-loop error against horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if result is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    axis = axes[0, 0]
    data, positions, colors = [], [], []
    for i, comparison in enumerate(comparisons):
        data += [comparison.real_length, comparison.dream_length]
        positions += [3 * i + 0.6, 3 * i + 1.4]
        colors += ["C0", "C1"]
    boxes = axis.boxplot(data, positions=positions, widths=0.7, patch_artist=True, showmeans=True)
    for patch, color in zip(boxes["boxes"], colors):
        patch.set_facecolor(color)
        patch.set_alpha(0.5)
    axis.set_xticks([3 * i + 1 for i in range(len(comparisons))], [c.name for c in comparisons], rotation=20)
    axis.set_ylabel("episode length (steps)")
    axis.set_title("real (blue) against dream (orange)")
    axis.grid(alpha=0.3, axis="y")
    if result is not None:
        axis = axes[0, 1]
        axis.plot(result.horizon, result.nll, "o-", markersize=3, label="MDN-RNN NLL (nats / dim)")
        axis.plot(result.horizon, result.copy_nll, "--", label="copy baseline N(z_k, s_j^2)")
        axis.set_xlabel("horizon j (steps on its own samples)")
        axis.set_ylabel("NLL of the real z_{k+j}")
        axis.grid(alpha=0.3)
        if np.isfinite(result.done_auc).any():
            twin = axis.twinx()
            twin.plot(result.horizon, result.done_auc, "s-", color="C3", markersize=3, label="death head ROC AUC")
            twin.set_ylabel("ROC AUC of done_{k+j-1}")
            twin.set_ylim(0.4, 1.0)
            twin.legend(loc="lower right", fontsize=8)
        axis.legend(loc="upper left", fontsize=8)
        axis.set_title("open-loop prediction")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    temporary = path.parent / f".{path.name}.tmp.png"
    fig.savefig(temporary, dpi=90)
    plt.close(fig)
    os.replace(temporary, path)
