"""Entity spans from sequences of tag ids, found exactly as seqeval finds them.

Two modes, as in seqeval:

- no scheme: seqeval's default (conlleval) chunking, which reads any of B-/I-/E-/S- tags leniently
  (an I- after O starts an entity, a type change ends one);
- a scheme ("IOB1", "IOB2", "IOE2", "IOBES", "BILOU"): seqeval's strict mode, where an entity must
  begin and end with the prefixes the scheme allows, or it is not an entity.

The pairwise rules are tabulated once per label set, so decoding a sentence is a loop over its tags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tamrin.configs import ConfigError

__all__ = ["EntityDecoder", "Entity"]

Entity = tuple[int, int, int]  # (type index, start, end)

# scheme: (allowed prefixes, start, inside, end) patterns, each "<prev prefix><cur prefix><type>" with
# "*" for any prefix or type, "=" for the same type and "!" for a different one (seqeval.scheme).
_STRICT = {
    "IOB1": ("IOB", "OI* II! BI* IB= BB=", "BI= II=", "II! IO* IB* BO* BI! BB="),
    "IOB2": ("IOB", "*B*", "BI= II=", "IO* II! IB* BO* BI! BB*"),
    "IOE2": ("IOE", "OI* OE* EI* EE* II! IE!", "IE= II=", "E**"),
    "IOBES": ("IOBES", "*B* *S*", "BI= BE= II= IE=", "S** E**"),
    "BILOU": ("BILOU", "*B* *U*", "BI= BL= II= IL=", "U** L**"),
}
_LENIENT_TAGS = ("O", "B", "I", "E", "S")


def _matches(patterns: str, prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    for pattern in patterns.split():
        same = prev[1] == cur[1]
        if (
            pattern[0] in ("*", prev[0])
            and pattern[1] in ("*", cur[0])
            and (pattern[2] == "*" or (pattern[2] == "=") == same)
        ):
            return True
    return False


def _lenient_end(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """seqeval's `end_of_chunk`: did a chunk end between `prev` and `cur`?"""
    (prev_tag, prev_type), (tag, type_) = prev, cur
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
    )


def _lenient_start(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """seqeval's `start_of_chunk`: did a chunk start between `prev` and `cur`?"""
    (prev_tag, prev_type), (tag, type_) = prev, cur
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != type_)
    )


def _labels(id2label: Mapping[int, str] | Sequence[str]) -> list[str]:
    if isinstance(id2label, Mapping):
        ids = sorted(int(key) for key in id2label)
        if ids != list(range(len(ids))):
            raise ConfigError(f"`id2label` must map the ids 0..{len(ids) - 1} to tags, got ids {ids}.")
        return [str(id2label[key]) for key in sorted(id2label, key=int)]
    return [str(label) for label in id2label]


class EntityDecoder:
    """Finds the entities of tag-id sequences for one label set and scheme.

    Args:
        id2label: the tag of each id (a mapping or a list), e.g. {0: "O", 1: "B-PER", 2: "I-PER"}.
        scheme: None for seqeval's default mode, else a strict-mode scheme (see module docstring).

    Raises:
        ConfigError: a tag is not of the form the mode reads (the message lists them).
    """

    def __init__(self, id2label: Mapping[int, str] | Sequence[str], scheme: str | None = None) -> None:
        labels = _labels(id2label)
        self.scheme = scheme
        if scheme is None:
            bad = [
                label
                for label in labels
                if label not in _LENIENT_TAGS and not label.startswith(("B-", "I-", "E-", "S-"))
            ]
            bilou = any(label.startswith(("L-", "U-")) for label in bad)
            hint = "; for BILOU tags set `scheme: BILOU`" if bilou else ""
            expected = "'O' or B-/I-/E-/S- followed by the type, e.g. 'B-PER'" + hint
            tokens = [(label[0], label[1:].split("-", 1)[-1] or "_") for label in labels if label not in bad]
        else:
            allowed = _STRICT[scheme][0]
            bad = [label for label in labels if not label or label[0] not in allowed]
            example = f"'{allowed[-1]}-PER'"
            expected = f"{scheme} tags (a prefix {', '.join(allowed)}, then the type, e.g. {example})"
            tokens = [(label[0], label[1:].strip("-") or "_") for label in labels if label not in bad]
        if bad:
            raise ConfigError(f"`id2label` has tags {bad} that are not {expected}.")
        self.num_labels = len(labels)
        self.types = sorted({type_ for _, type_ in tokens})
        outside = ("O", "_")  # the virtual tag before and after each sentence
        tokens.append(outside)
        index = {type_: position for position, type_ in enumerate(self.types)}
        self._type = [index.get(type_, -1) for _, type_ in tokens]
        self.outside = len(labels)
        if scheme is None:
            self._end = [[_lenient_end(p, c) for c in tokens] for p in tokens]
            self._start = [[_lenient_start(p, c) for c in tokens] for p in tokens]
        else:
            _, start, inside, end = _STRICT[scheme]
            self._start = [[_matches(start, p, c) for c in tokens] for p in tokens]
            self._inside = [[_matches(inside, p, c) for c in tokens] for p in tokens]
            self._end = [[_matches(end, p, c) for c in tokens] for p in tokens]

    def entities(self, ids: Sequence[int]) -> set[Entity]:
        """The entities of one sentence, as (type index, start, end) triples."""
        sequence = [*ids, self.outside]
        return self._strict(sequence) if self.scheme else self._lenient(sequence)

    def _lenient(self, sequence: list[int]) -> set[Entity]:
        # seqeval.metrics.sequence_labeling.get_entities, on ids.
        chunks, prev, begin = set(), self.outside, 0
        for i, current in enumerate(sequence):
            if self._end[prev][current]:
                chunks.add((self._type[prev], begin, i - 1))
            if self._start[prev][current]:
                begin = i
            prev = current
        return chunks

    def _strict(self, sequence: list[int]) -> set[Entity]:
        # seqeval.scheme.Tokens.entities, on ids; the sentence ends with the virtual outside tag.
        entities, prev, i = set(), self.outside, 0
        while i < len(sequence):
            token = sequence[i]
            if self._start[prev][token]:
                end, last = i + 1, token
                while end < len(sequence) and self._inside[last][sequence[end]]:
                    last, end = sequence[end], end + 1
                if self._end[sequence[end - 1]][sequence[end]]:
                    entities.add((self._type[token], i, end))
                i = end
            else:
                i += 1
            prev = sequence[i - 1]
        return entities
