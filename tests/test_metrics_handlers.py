"""Tests of tamrin.metrics_handlers: exactness against references, constant memory, gathering, errors.

References: scikit-learn (classification, regression) and seqeval (sequence labeling), both test
dependencies, and plain implementations below for CER/WER, BLEU, ROUGE and Kendall's tau.
"""

from __future__ import annotations

import math
import random
import re
import threading
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import levenshtein

from tamrin.configs import ConfigError
from tamrin.metrics_handlers import (
    METRICS_HANDLERS,
    MetricConfig,
    MetricsHandler,
    available_tasks,
    build_metrics_handler,
    check_metric_for_best_model,
    register_metrics_handler,
)

BATCH_SIZES = [1, 7, 32, None]  # None: the whole set as one batch; the others leave an uneven last batch
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


# -- helpers -------------------------------------------------------------------------------------------
def to_device(data: Any, device: str) -> Any:
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, dict):
        return {key: to_device(value, device) for key, value in data.items()}
    return data


def evaluate(handler: MetricsHandler, n: int, collate, batch_size: int | None, device: str = "cpu") -> dict:
    size = batch_size or n
    for start in range(0, n, size):
        outputs, batch = collate(list(range(start, min(start + size, n))))
        handler.update(to_device(outputs, device), to_device(batch, device))
    return handler.compute()


def tensor_collate(logits: torch.Tensor, labels: torch.Tensor):
    return lambda idx: ({"logits": logits[idx]}, {"labels": labels[idx]})


def state_numel(obj: Any) -> int:
    """Elements held by a handler's state: tensors, torchmetrics states, containers."""
    from torchmetrics import Metric

    if isinstance(obj, MetricsHandler):
        return sum(state_numel(value) for value in vars(obj).values())
    if isinstance(obj, Metric):
        return sum(state_numel(value) for value in obj.metric_state.values())
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, (list, tuple, dict)):
        values = obj.values() if isinstance(obj, dict) else obj
        return len(obj) + sum(state_numel(value) for value in values)
    return 0


class FakeProcessGroup:
    """Processes as threads, sharded and gathered as accelerate does.

    Each step, rank r gets `batch_size` samples of a global batch of `world_size * batch_size`; the
    last global batch is padded with samples from the start, and `gather` (all-gather in rank order)
    drops the padding at the last step, as `gather_for_metrics` does.
    """

    def __init__(self, world_size: int, n: int, batch_size: int) -> None:
        per_step = world_size * batch_size
        steps = math.ceil(n / per_step)
        padded = [index % n for index in range(steps * per_step)]
        self.shards = [
            [padded[k * per_step + r * batch_size : k * per_step + (r + 1) * batch_size] for k in range(steps)]
            for r in range(world_size)
        ]
        self.world_size, self.remainder, self.last_step = world_size, n % per_step, steps - 1
        self.step = [0] * world_size
        self._slots: list[Any] = [None] * world_size
        self._barrier = threading.Barrier(world_size, timeout=30)

    def gather_fn(self, rank: int):
        def gather(data: Any) -> Any:
            self._slots[rank] = data
            self._barrier.wait()
            gathered = _concat(list(self._slots))
            self._barrier.wait()  # every rank has read the slots before they are overwritten
            if self.step[rank] == self.last_step and self.remainder:
                gathered = _truncate(gathered, self.remainder)
            return gathered

        return gather

    def run(self, make_handler, collate, losses: torch.Tensor | None = None) -> list[dict]:
        def worker(rank: int) -> dict:
            handler = make_handler(self.gather_fn(rank))
            for step, indices in enumerate(self.shards[rank]):
                self.step[rank] = step
                handler.update(*collate(indices))
                if losses is not None:
                    handler.update_loss(losses[indices], len(indices))
            return handler.compute()

        with ThreadPoolExecutor(self.world_size) as pool:
            return [future.result() for future in [pool.submit(worker, r) for r in range(self.world_size)]]


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    if isinstance(parts[0], tuple):
        return tuple(_concat([part[i] for part in parts]) for i in range(len(parts[0])))
    return [item for part in parts for item in part]


def _truncate(data: Any, size: int) -> Any:
    return tuple(_truncate(item, size) for item in data) if isinstance(data, tuple) else data[:size]


# -- data and references ---------------------------------------------------------------------------------
def classification_data(n: int = 101, num_classes: int = 5, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, num_classes, generator=generator)
    return logits, torch.randint(0, num_classes, (n,), generator=generator)


IOB = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
TAGS = {
    None: IOBES,
    "IOB1": IOB,
    "IOB2": IOB,
    "IOBES": IOBES,
    "IOE2": ["O", "I-PER", "E-PER", "I-LOC", "E-LOC"],
    "BILOU": ["O", "B-PER", "I-PER", "L-PER", "U-PER", "B-LOC", "I-LOC", "L-LOC", "U-LOC"],
}


def tagging_data(labels: list[str], n: int = 60, seed: int = 0):
    """Random gold tags (with -100 holes) and predictions that are right 70% of the time."""
    rng = random.Random(seed)
    gold, predicted = [], []
    for _ in range(n):
        length = rng.randint(1, 12)
        tags = [rng.randrange(len(labels)) for _ in range(length)]
        gold.append([tag if i == 0 or rng.random() > 0.15 else -100 for i, tag in enumerate(tags)])
        predicted.append([tag if rng.random() < 0.7 else rng.randrange(len(labels)) for tag in tags])

    def collate(indices: list[int]):
        width = max(len(gold[i]) for i in indices)
        ids = torch.tensor([predicted[i] + [0] * (width - len(predicted[i])) for i in indices])
        labels_ = torch.tensor([gold[i] + [-100] * (width - len(gold[i])) for i in indices])
        noise = 0.1 * torch.rand(*ids.shape, len(labels))  # below the one-hot margin: argmax == ids
        logits = torch.nn.functional.one_hot(ids, len(labels)).float() + noise
        return {"logits": logits}, {"labels": labels_}

    return gold, predicted, collate


def seqeval_reference(labels: list[str], gold, predicted, scheme: str | None, average: str) -> dict:
    from seqeval import metrics
    from seqeval import scheme as schemes

    y_true = [[labels[g] for g, p in zip(gs, ps) if g != -100] for gs, ps in zip(gold, predicted)]
    y_pred = [[labels[p] for g, p in zip(gs, ps) if g != -100] for gs, ps in zip(gold, predicted)]
    kwargs = {} if scheme is None else {"mode": "strict", "scheme": getattr(schemes, scheme)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "accuracy": metrics.accuracy_score(y_true, y_pred),
            "precision": metrics.precision_score(y_true, y_pred, average=average, **kwargs),
            "recall": metrics.recall_score(y_true, y_pred, average=average, **kwargs),
            "f1": metrics.f1_score(y_true, y_pred, average=average, **kwargs),
        }


WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "red", "big", "Hat,"]


def text_data(n: int = 45, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    references = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]
    predictions = []
    for reference in references:
        words = reference.split()
        if rng.random() < 0.6:
            words = [word if rng.random() < 0.8 else rng.choice(WORDS) for word in words]
        else:
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, 9))]
        predictions.append(" ".join(words))
    return predictions, references


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(predictions: list[str], references: list[str], max_n: int = 4) -> float:
    matches, totals, pred_len, ref_len = [0] * max_n, [0] * max_n, 0, 0
    for prediction, reference in zip(predictions, references):
        p, r = prediction.split(), reference.split()
        pred_len, ref_len = pred_len + len(p), ref_len + len(r)
        for n in range(1, max_n + 1):
            matches[n - 1] += sum((ngrams(p, n) & ngrams(r, n)).values())
            totals[n - 1] += sum(ngrams(p, n).values())
    if min(matches) == 0:
        return 0.0
    brevity = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / pred_len)
    return brevity * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n)


def rouge_reference(predictions: list[str], references: list[str]) -> dict[str, float]:
    def tokens(text: str) -> list[str]:
        return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()

    def fmeasure(hits: int, pred_len: int, ref_len: int) -> float:
        if not pred_len or not ref_len or not hits:
            return 0.0
        precision, recall = hits / pred_len, hits / ref_len
        return 2 * precision * recall / (precision + recall)

    def lcs(a: list[str], b: list[str]) -> int:
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
        return table[-1][-1]

    scores: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for prediction, reference in zip(predictions, references):
        p, r = tokens(prediction), tokens(reference)
        for n in (1, 2):
            pn, rn = ngrams(p, n), ngrams(r, n)
            scores[f"rouge{n}"].append(fmeasure(sum((pn & rn).values()), sum(pn.values()), sum(rn.values())))
        scores["rougeL"].append(fmeasure(lcs(p, r), len(p), len(r)))
    return {key: sum(values) / len(values) for key, values in scores.items()}


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            ties_x += dx == 0
            ties_y += dy == 0
            concordant += dx * dy > 0
            discordant += dx * dy < 0
    pairs = len(x) * (len(x) - 1) // 2
    return (concordant - discordant) / math.sqrt((pairs - ties_x) * (pairs - ties_y))


# -- registry, configuration and errors ------------------------------------------------------------------
def test_builtin_tasks_are_registered_and_accepted_by_trainer_config():
    from tamrin import TrainerConfig

    builtin = {
        "text_classification",
        "sequence_labeling",
        "image2text",
        "speech_recognition",
        "text_generation",
        "image_classification",
        "regression",
    }
    assert builtin <= set(available_tasks())
    for task in builtin:
        assert TrainerConfig(task=task).task == task


def test_unknown_task_lists_tasks_with_suggestion():
    with pytest.raises(
        ConfigError,
        match=r"text_clasification.*Available tasks: .*regression.*Did you mean "
        r"`text_classification`",
    ):
        build_metrics_handler("text_clasification", [])


def test_unknown_metric_lists_valid_metrics_with_suggestion():
    message = (
        r"`metrics\[1\]='acuracy'` is not a metric of task 'text_classification'\. "
        r"Valid metrics: accuracy, precision, recall, f1\. Did you mean `accuracy`"
    )
    with pytest.raises(ConfigError, match=message):
        build_metrics_handler("text_classification", ["f1", "acuracy"])


def test_option_that_does_not_apply_is_rejected():
    with pytest.raises(ConfigError, match=r"option `top_k` does not apply to `f1`"):
        build_metrics_handler("image_classification", [{"name": "f1", "top_k": 3}])
    with pytest.raises(ConfigError, match=r"`threshold` applies to multi-label classification only"):
        build_metrics_handler("text_classification", [{"name": "f1", "threshold": 0.3}])


def test_metric_config_validates_choices_and_keys():
    with pytest.raises(ConfigError, match=r"`average='avg'` is not a valid choice"):
        build_metrics_handler("text_classification", [{"name": "f1", "average": "avg"}])
    with pytest.raises(ConfigError, match=r"Unknown key `avrage`.*Did you mean `average`"):
        build_metrics_handler("text_classification", [{"name": "f1", "avrage": "macro"}])
    with pytest.raises(ConfigError, match=r"`scheme='IOB3'`.*Did you mean `IOB2`"):
        MetricConfig(name="f1", scheme="IOB3")


def test_duplicate_metric_and_nameless_mapping_fail():
    with pytest.raises(ConfigError, match="listed twice"):
        build_metrics_handler("regression", ["mse", "mse"])
    with pytest.raises(ConfigError, match="needs a `name` key"):
        build_metrics_handler("regression", [{"average": "macro"}])


def test_objective_accepts_plain_and_logged_names():
    handler = build_metrics_handler("speech_recognition", ["cer"])
    assert handler.objective("cer") == handler.objective("evaluation.wer") == "minimize"
    assert handler.objective("evaluation.loss") == handler.objective("train.loss") == "minimize"
    assert build_metrics_handler("text_classification", []).objective("evaluation.f1") == "maximize"
    with pytest.raises(ConfigError, match=r"`evaluation.bleu` is not a metric of task 'speech_recognition'"):
        handler.objective("evaluation.bleu")


def test_check_metric_for_best_model():
    handler = build_metrics_handler("regression", ["mse", "r2"])
    assert check_metric_for_best_model(handler, "evaluation.r2") == "evaluation.r2"
    assert check_metric_for_best_model(handler, "train.loss") == "train.loss"
    assert handler.objective("evaluation.r2") == "maximize"
    assert handler.objective("evaluation.mse") == handler.objective("train.loss") == "minimize"
    with pytest.raises(
        ConfigError,
        match=r"'evaluation.mae'.*Valid: 'evaluation.loss', 'evaluation.mse', "
        r"'evaluation.r2', 'train.loss'\. Add 'mae' to `metrics`",
    ):
        check_metric_for_best_model(handler, "evaluation.mae")
    with pytest.raises(ConfigError, match=r"Did you mean `evaluation.mse`"):
        check_metric_for_best_model(handler, "evaluation.mser")
    assert check_metric_for_best_model(None, "evaluation.loss") == "evaluation.loss"
    assert (
        check_metric_for_best_model(handler, "mse")
        == check_metric_for_best_model(handler, "eval_mse")
        == "evaluation.mse"
    )


def test_sequence_labeling_needs_readable_id2label():
    with pytest.raises(ConfigError, match="need the tag names: pass `id2label`"):
        build_metrics_handler("sequence_labeling", ["f1"])
    with pytest.raises(ConfigError, match=r"tags \['PER'\] that are not 'O' or B-/I-/E-/S-"):
        build_metrics_handler("sequence_labeling", ["f1"], id2label={0: "O", 1: "PER"})
    with pytest.raises(ConfigError, match=r"tags \['S-PER'\] that are not IOB2 tags"):
        build_metrics_handler("sequence_labeling", [{"name": "f1", "scheme": "IOB2"}], id2label=["O", "S-PER"])
    build_metrics_handler("sequence_labeling", ["accuracy"])  # token accuracy needs no tag names


def test_missing_inputs_fail_with_the_fix():
    handler = build_metrics_handler("text_classification", ["accuracy"])
    with pytest.raises(ValueError, match=r"reads `labels` from the batch, which has keys \['label'\]"):
        handler.update(torch.randn(2, 3), {"label": torch.tensor([0, 1])})
    text = build_metrics_handler("image2text", ["cer"])
    with pytest.raises(ValueError, match="pass `post_process`"):
        text.update({"logits": torch.randn(2, 4, 5)}, {"texts": ["a", "b"]})
    with pytest.raises(ValueError, match="pass `decode_labels`"):
        text.update(["a", "b"], {"labels": torch.zeros(2, 3)})


@pytest.mark.parametrize("multilabel", [False, True])
def test_building_a_classification_metric_before_the_number_of_classes_is_known_names_the_fix(multilabel):
    handler = build_metrics_handler("text_classification", ["f1"], multilabel=multilabel)
    with pytest.raises(ValueError, match=r"once it knows the number of classes: give `num_labels`"):
        handler.build_metric(handler.metric_configs["f1"])


def test_register_rejects_inconsistent_tables():
    with pytest.raises(TypeError, match=r"objectives\['mse'\]"):

        @register_metrics_handler("broken")
        class Broken(MetricsHandler):
            valid_metrics = ("mae",)
            objectives = {"mse": "minimize"}

    assert "broken" not in METRICS_HANDLERS


def test_a_second_handler_for_a_task_is_an_error_unless_replace_is_given():
    class First(MetricsHandler):
        valid_metrics = ("accuracy",)

    class Second(First):
        pass

    with pytest.raises(
        ValueError, match=r"Metrics handler 'regression' is already registered to .*RegressionMetricsHandler"
    ):
        register_metrics_handler("regression")(First)
    assert build_metrics_handler("regression", ["mse"]).task == "regression"
    register_metrics_handler("replaced_task")(First)
    try:
        with pytest.raises(ValueError, match="pass replace=True"):
            register_metrics_handler("replaced_task")(Second)
        register_metrics_handler("replaced_task", replace=True)(Second)
        assert type(build_metrics_handler("replaced_task", ["accuracy"])) is Second
    finally:
        METRICS_HANDLERS.remove("replaced_task")


# -- exactness -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
def test_text_classification_matches_sklearn(batch_size, average):
    sk = pytest.importorskip("sklearn.metrics")
    logits, labels = classification_data()
    # num_labels=6 with 5 classes in use: class 5 never occurs, which the macro average must skip.
    metrics = ["accuracy", *({"name": name, "average": average} for name in ("precision", "recall", "f1"))]
    handler = build_metrics_handler("text_classification", metrics, num_labels=6)
    result = evaluate(
        handler, len(labels), tensor_collate(torch.cat([logits, logits[:, :1] - 9], 1), labels), batch_size
    )
    y, p = labels.numpy(), logits.argmax(-1).numpy()
    expected = {
        "accuracy": sk.accuracy_score(y, p),
        "precision": sk.precision_score(y, p, average=average, zero_division=0),
        "recall": sk.recall_score(y, p, average=average, zero_division=0),
        "f1": sk.f1_score(y, p, average=average, zero_division=0),
    }
    assert result == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_multilabel_classification_matches_sklearn(batch_size):
    sk = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(83, 4, generator=generator)
    labels = torch.rand(83, 4, generator=generator).gt(0.6).float()
    metrics = [
        "accuracy",
        {"name": "f1", "threshold": 0.3},
        {"name": "precision", "average": "micro"},
        {"name": "recall", "average": "weighted"},
    ]
    handler = build_metrics_handler("text_classification", metrics, multilabel=True)
    result = evaluate(handler, len(labels), tensor_collate(logits, labels), batch_size)
    y, probabilities = labels.int().numpy(), logits.sigmoid()
    p05, p03 = probabilities.gt(0.5).int().numpy(), probabilities.gt(0.3).int().numpy()
    expected = {
        "accuracy": sk.accuracy_score(y, p05),
        "f1": sk.f1_score(y, p03, average="macro", zero_division=0),
        "precision": sk.precision_score(y, p05, average="micro", zero_division=0),
        "recall": sk.recall_score(y, p05, average="weighted", zero_division=0),
    }
    assert result == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_image_classification_top_k_matches_sklearn(batch_size):
    sk = pytest.importorskip("sklearn.metrics")
    logits, labels = classification_data(n=97, num_classes=10, seed=2)
    metrics = ["accuracy", {"name": "top_k_accuracy", "top_k": 3}]
    handler = build_metrics_handler("image_classification", metrics)
    result = evaluate(handler, len(labels), tensor_collate(logits, labels), batch_size)
    y = labels.numpy()
    assert result == pytest.approx(
        {
            "accuracy": sk.accuracy_score(y, logits.argmax(-1).numpy()),
            "top_k_accuracy": sk.top_k_accuracy_score(y, logits.numpy(), k=3, labels=list(range(10))),
        },
        rel=1e-6,
    )


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("num_outputs", [None, 3])
def test_regression_matches_sklearn(batch_size, num_outputs):
    sk = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(3)
    shape = (90,) if num_outputs is None else (90, num_outputs)
    targets = torch.randn(*shape, generator=generator) * 3 + 1
    predictions = targets + torch.randn(*shape, generator=generator)
    # One output: [batch, 1] predictions against [batch] labels.
    outputs = predictions.unsqueeze(-1) if num_outputs is None else predictions
    handler = build_metrics_handler("regression", ["mse", "mae", "r2"])
    result = evaluate(handler, len(targets), tensor_collate(outputs, targets), batch_size)
    y, p = targets.double().numpy(), predictions.double().numpy()
    assert result == pytest.approx(
        {"mse": sk.mean_squared_error(y, p), "mae": sk.mean_absolute_error(y, p), "r2": sk.r2_score(y, p)}, rel=1e-9
    )


SEQEVAL_CASES = [
    (scheme, average, batch_size)
    for scheme in (None, "IOB1", "IOB2", "IOBES")
    for average, batch_size in [("micro", 1), ("micro", 7), ("macro", 32), ("weighted", None)]
]
SEQEVAL_CASES += [("IOE2", "macro", 7), ("BILOU", "macro", 7)]


@pytest.mark.parametrize(("scheme", "average", "batch_size"), SEQEVAL_CASES)
def test_sequence_labeling_matches_seqeval(scheme, average, batch_size):
    pytest.importorskip("seqeval")
    labels = TAGS[scheme]
    gold, predicted, collate = tagging_data(labels, seed=batch_size or 5)
    metrics = [
        "accuracy",
        *({"name": name, "average": average, "scheme": scheme} for name in ("precision", "recall", "f1")),
    ]
    handler = build_metrics_handler("sequence_labeling", metrics, id2label=dict(enumerate(labels)))
    result = evaluate(handler, len(gold), collate, batch_size)
    assert result == pytest.approx(seqeval_reference(labels, gold, predicted, scheme, average), rel=1e-9)


def test_sequence_labeling_schemes_side_by_side():
    pytest.importorskip("seqeval")
    gold, predicted, collate = tagging_data(IOB, n=40, seed=11)
    handler = build_metrics_handler("sequence_labeling", ["f1", {"name": "precision", "scheme": "IOB2"}], id2label=IOB)
    result = evaluate(handler, len(gold), collate, 7)
    assert result["f1"] == pytest.approx(seqeval_reference(IOB, gold, predicted, None, "micro")["f1"])
    strict = seqeval_reference(IOB, gold, predicted, "IOB2", "micro")
    assert result["precision"] == pytest.approx(strict["precision"])


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_error_rates_match_levenshtein(batch_size):
    predictions, references = text_data()
    handler = build_metrics_handler("speech_recognition", ["cer", "wer"], post_process=lambda outputs: outputs["texts"])

    def collate(idx: list[int]):
        return {"texts": [predictions[i] for i in idx]}, {"texts": [references[i] for i in idx]}

    result = evaluate(handler, len(references), collate, batch_size)
    cer = sum(levenshtein(p, r) for p, r in zip(predictions, references)) / sum(map(len, references))
    wer = sum(levenshtein(p.split(), r.split()) for p, r in zip(predictions, references)) / sum(
        len(r.split()) for r in references
    )
    assert result == pytest.approx({"cer": cer, "wer": wer}, rel=1e-6)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_text_generation_matches_reference_bleu_and_rouge(batch_size):
    predictions, references = text_data(seed=4)
    handler = build_metrics_handler(
        "text_generation",
        ["bleu", "rouge1", "rouge2", "rougeL"],
        decode_labels=lambda batch: [references[i] for i in batch["ids"]],
    )
    collate = lambda idx: ([predictions[i] for i in idx], {"ids": torch.tensor(idx)})  # noqa: E731
    result = evaluate(handler, len(references), collate, batch_size)
    expected = {"bleu": corpus_bleu(predictions, references), **rouge_reference(predictions, references)}
    assert expected["bleu"] > 0
    assert result == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_loss_is_the_mean_over_samples(batch_size):
    losses = torch.rand(77, generator=torch.Generator().manual_seed(5))
    handler = build_metrics_handler("regression", [])
    size = batch_size or len(losses)
    for start in range(0, len(losses), size):
        batch = losses[start : start + size]
        handler.update_loss(batch.mean(), len(batch))
    assert isinstance(handler._loss_sum, torch.Tensor)  # summed on the device, read in compute()
    assert handler.compute() == pytest.approx({"loss": losses.double().mean().item()}, rel=1e-6)


def test_update_reads_nothing_back_to_the_host(monkeypatch):
    logits, labels = classification_data()
    handler = build_metrics_handler("image_classification", ["accuracy", "top_k_accuracy", "f1"], num_labels=5)
    regression = build_metrics_handler("regression", ["mse", "r2"])

    def forbidden(*args, **kwargs):
        raise AssertionError("update must not read values back to the host")

    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    monkeypatch.setattr(torch.Tensor, "tolist", forbidden)
    handler.update({"logits": logits}, {"labels": labels})
    handler.update_loss(torch.tensor(0.3), len(labels))
    regression.update(logits[:, 0], {"labels": logits[:, 1]})
    monkeypatch.undo()
    assert set(handler.compute()) == {"accuracy", "top_k_accuracy", "f1", "loss"}


def test_compute_without_data_is_nan_and_reset_forgets():
    handler = build_metrics_handler("text_classification", ["accuracy", "f1"])
    assert all(math.isnan(value) for value in handler.compute().values())
    handler.update(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), {"labels": torch.tensor([0, 0])})
    handler.update_loss(torch.tensor(1.0), 2)
    assert handler.compute()["accuracy"] == 0.5 and "loss" in handler.compute()
    handler.reset()
    result = handler.compute()
    assert set(result) == {"accuracy", "f1"} and math.isnan(result["accuracy"])
    handler.update(torch.tensor([[0.0, 2.0]]), {"labels": torch.tensor([1])})
    assert handler.compute()["accuracy"] == 1.0


# -- constant memory ------------------------------------------------------------------------------------
def _handlers_and_batches():
    logits, labels = classification_data(n=64, num_classes=10)
    _, _, tag_collate = tagging_data(IOBES, n=64)
    predictions, references = text_data(n=64)
    text_batch = lambda i: ([predictions[i]], {"texts": [references[i]]})  # noqa: E731
    return [
        (
            build_metrics_handler("image_classification", ["accuracy", "top_k_accuracy", "f1"]),
            lambda i: ({"logits": logits[i : i + 1]}, {"labels": labels[i : i + 1]}),
        ),
        (
            build_metrics_handler("text_classification", ["accuracy", "f1"], multilabel=True),
            lambda i: (logits[i : i + 1], {"labels": logits[i : i + 1].gt(0).float()}),
        ),
        (
            build_metrics_handler(
                "sequence_labeling", ["accuracy", "f1", {"name": "recall", "scheme": "IOBES"}], id2label=IOBES
            ),
            lambda i: tag_collate([i]),
        ),
        (
            build_metrics_handler("regression", ["mse", "mae", "r2"]),
            lambda i: (logits[i : i + 1, 0], {"labels": logits[i : i + 1, 1]}),
        ),
        (build_metrics_handler("image2text", ["cer", "wer"]), text_batch),
        (build_metrics_handler("text_generation", ["bleu", "rouge1", "rougeL"]), text_batch),
    ]


def test_state_size_does_not_grow_with_the_evaluation_set():
    for handler, batch in _handlers_and_batches():
        for i in range(3):
            handler.update(*batch(i))
            handler.update_loss(torch.tensor(0.5), 1)
        size = state_numel(handler)
        for i in range(3, 64):
            handler.update(*batch(i))
            handler.update_loss(torch.tensor(0.5), 1)
        assert state_numel(handler) == size, type(handler).__name__
        assert all(not math.isnan(value) for value in handler.compute().values())


# -- distributed ---------------------------------------------------------------------------------------
def _distributed_cases():
    logits, labels = classification_data(n=37)
    gold, _, tag_collate = tagging_data(IOB, n=37, seed=3)
    predictions, references = text_data(n=37, seed=5)

    def text_collate(idx: list[int]):
        return [predictions[i] for i in idx], {"texts": [references[i] for i in idx]}

    return {
        "text_classification": (
            ["accuracy", "f1", {"name": "recall", "average": "weighted"}],
            {},
            tensor_collate(logits, labels),
        ),
        "sequence_labeling": (
            ["accuracy", "f1", {"name": "precision", "scheme": "IOB2", "average": "macro"}],
            {"id2label": IOB},
            tag_collate,
        ),
        "speech_recognition": (["cer", "wer"], {}, text_collate),
        "text_generation": (["bleu", "rouge2", "rougeL"], {}, text_collate),
        "regression": (["mse", "mae", "r2"], {}, tensor_collate(logits[:, :2], logits[:, 2:4])),
    }


@pytest.mark.parametrize(
    "task", ["text_classification", "sequence_labeling", "speech_recognition", "text_generation", "regression"]
)
@pytest.mark.parametrize("batch_size", [2, 4])
def test_two_processes_match_one_on_the_union(task, batch_size):
    metrics, context, collate = _distributed_cases()[task]
    losses = torch.rand(37, generator=torch.Generator().manual_seed(6))
    single = build_metrics_handler(task, metrics, **context)
    expected = evaluate(single, 37, collate, 5)
    group = FakeProcessGroup(world_size=2, n=37, batch_size=batch_size)  # 37 samples: the last step is padded
    assert group.remainder

    def make_handler(gather):
        return build_metrics_handler(task, metrics, gather=gather, **context)

    results = group.run(make_handler, collate, losses=losses)
    expected["loss"] = losses.double().mean().item()
    for result in results:
        assert result == pytest.approx(expected, rel=1e-6)


def test_real_accelerate_gather_in_one_process():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    logits, labels = classification_data(n=37)
    predictions, references = text_data(n=37)
    loader = accelerator.prepare(
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(logits, labels), batch_size=5)
    )
    gather = accelerator.gather_for_metrics
    handlers = [
        build_metrics_handler("text_classification", ["accuracy", "f1"], gather=gather),
        build_metrics_handler("text_generation", ["bleu", "rougeL"], gather=gather),
    ]
    for step, (batch_logits, batch_labels) in enumerate(loader):
        handlers[0].update({"logits": batch_logits}, {"labels": batch_labels})
        handlers[0].update_loss(batch_logits.mean(), len(batch_labels))
        texts = slice(5 * step, 5 * step + len(batch_labels))
        handlers[1].update(predictions[texts], {"texts": references[texts]})
    expected = evaluate(
        build_metrics_handler("text_classification", ["accuracy", "f1"]), 37, tensor_collate(logits, labels), 37
    )
    expected["loss"] = logits.mean().item()
    assert handlers[0].compute() == pytest.approx(expected, rel=1e-6)
    expected = {
        "bleu": corpus_bleu(predictions, references),
        "rougeL": rouge_reference(predictions, references)["rougeL"],
    }
    assert handlers[1].compute() == pytest.approx(expected, rel=1e-5)


# -- devices -------------------------------------------------------------------------------------------
@CUDA
def test_handlers_update_on_cuda():
    logits, labels = classification_data()
    _, _, tag_collate = tagging_data(IOB)
    cases = [
        ("image_classification", ["accuracy", "top_k_accuracy"], {}, tensor_collate(logits, labels), 101),
        ("regression", ["mse", "r2"], {}, tensor_collate(logits[:, 0], logits[:, 1]), 101),
        ("sequence_labeling", ["accuracy", "f1"], {"id2label": IOB}, tag_collate, 60),
    ]
    for task, metrics, context, collate, n in cases:
        on_cpu = evaluate(build_metrics_handler(task, metrics, **context), n, collate, 7)
        handler = build_metrics_handler(task, metrics, **context)
        on_cuda = evaluate(handler, n, collate, 7, device="cuda")
        assert on_cuda == pytest.approx(on_cpu, rel=1e-5), task
        handler.update_loss(torch.tensor(0.25, device="cuda"), 3)
        assert handler._loss_sum.device.type == "cuda"


# -- the custom handler of docs/metrics.md -----------------------------------------------------------------
def test_docs_custom_handler_example_runs(capsys):
    section = DOCS.read_text(encoding="utf-8").split("## Writing a handler for a new task", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2 and '@register_metrics_handler("ranking")' in blocks[0]
    previous = METRICS_HANDLERS.remove("ranking")
    namespace: dict[str, Any] = {"__name__": "docs_metrics_example"}
    try:
        for block in blocks:
            exec(compile(block, str(DOCS), "exec"), namespace)
        assert "kendall_tau" in capsys.readouterr().out
        handler = namespace["handler"]
        assert handler.compute()["kendall_tau"] == pytest.approx(2 / 3)

        generator = torch.Generator().manual_seed(7)
        scores = torch.randn(50, generator=generator)
        relevance = torch.randint(0, 4, (50,), generator=generator)
        handler = build_metrics_handler("ranking", ["kendall_tau"])
        result = evaluate(handler, 50, tensor_collate(scores, relevance), 7)
        expected = kendall_tau_b(scores.tolist(), relevance.float().tolist())
        assert result["kendall_tau"] == pytest.approx(expected, rel=1e-5)
    finally:
        METRICS_HANDLERS.remove("ranking")
        if previous is not None:
            METRICS_HANDLERS.add("ranking", previous)
