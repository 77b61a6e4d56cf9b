"""LLM backends, the one place that loads or calls language models: `load(backend, model, **options)`.

`transformers` runs a local causal LM (Hugging Face id, folder, or GGUF such as the packaged SmolLM2); `openai`
calls any OpenAI-compatible endpoint; `vllm` runs a vLLM engine in the process (a GPU actor of the stage's pool).
All take chat conversations, decode greedily by default (reproducible runs), and return one `Completion` per
conversation: a failed item carries an error code instead of raising, so inputs = kept + rejected always holds.
"""

from __future__ import annotations

import email.utils
import http.client
import importlib.util
import json
import math
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pairforge.pipeline import models
from pairforge.pipeline.schema import EndpointError
from pairforge.pipeline.vocabulary import BACKEND_ERROR, RETRIED_STATUS, passing_failure

VLLM_MISSING = "backend vllm needs a GPU worker with vllm installed: pip install vllm"
YES_WORDS = ("yes", "Yes", "YES", " yes", " Yes", " YES")
NO_WORDS = ("no", "No", "NO", " no", " No", " NO")
Messages = list[dict]  # one chat conversation: [{"role": "system" | "user" | "assistant", "content": str}, ...]


@dataclass
class Completion:
    """One conversation's answer: `text`, or None and an `error` code when the backend failed on this item."""

    text: str | None
    error: str | None = None
    attempts: int = 1
    logprobs: list[dict] | None = None  # when asked for: per generated token {"token", "logprob", "top_logprobs"}


def _answer_word(token: str) -> str:
    return token.strip().strip("\"'").lower()


def yes_probability_from_logprobs(logprobs: list[dict] | None, after: str = "") -> float | None:
    """P(yes) / (P(yes) + P(no)) from the top alternatives at a reply's answer slot: its first word token once the
    reply contains `after` (whitespace ignored, so '"relevant":' matches `{ "relevant" : "yes" }`). None when that
    word is not yes/no or there are no logprobs: the caller then falls back to parsing the answer."""
    marker, seen = "".join(after.split()), ""
    for entry in logprobs or []:
        if marker not in "".join(seen.split()):
            seen += entry["token"]
            continue
        word = _answer_word(entry["token"])
        if not word:  # quotes and spaces before the answer word
            continue
        if word not in ("yes", "no"):
            return None
        alternatives = {item["token"]: item["logprob"] for item in entry.get("top_logprobs") or []}
        alternatives.setdefault(entry["token"], entry["logprob"])
        yes, no = (sum(math.exp(lp) for t, lp in alternatives.items() if _answer_word(t) == w) for w in ("yes", "no"))
        return yes / (yes + no) if yes + no > 0 else None
    return None


def control_tokens(tokenizer) -> list[str]:
    """The tokenizer's special tokens as written ("<|im_end|>", "<|endoftext|>", ...), longest first."""
    found = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return sorted(found | set(tokenizer.all_special_tokens), key=len, reverse=True)


def as_text(text: str, tokens: list[str]) -> str:
    """A text that no tokenizer reads as control tokens: each special token written inside it is broken by a word
    joiner (U+2060) after its first character, so a passage holding "<|im_end|><|im_start|>assistant" stays text
    and cannot end its turn or start another. Texts without one are returned unchanged."""
    for token in tokens:
        if token in text:
            text = text.replace(token, token[:1] + "\u2060" + token[1:])
    return text


def _texts_only(batch: list[Messages], tokens: list[str]) -> list[Messages]:
    return [[{**message, "content": as_text(message["content"], tokens)} for message in messages] for messages in batch]


# Where GGUF models are kept once converted (see `_converted`); one folder per GGUF file's content.
GGUF_CACHE = Path(os.environ.get("PAIRFORGE_GGUF_CACHE", Path.home() / ".cache" / "pairforge" / "gguf"))


def _weights(model: str) -> Path:
    """The transformers folder to load from: the model's own, or the converted copy of its one GGUF file."""
    path = models.resolve(model)
    if path.is_file():  # a .gguf file named directly
        return _converted(path.parent, path.name)
    ggufs = sorted(path.glob("*.gguf"))
    return _converted(path, ggufs[0].name) if len(ggufs) == 1 and not (path / "config.json").exists() else path


def _converted(folder: Path, gguf_file: str) -> Path:
    """A GGUF model as a plain transformers folder, converted on first use. transformers dequantizes GGUF to
    float32 on every load anyway, and parsing the file took ~16 s a load here; the converted copy (the same
    tensors, tokenizer and chat template) loads in under a second. Written to a temporary folder and renamed, so
    actors converting at the same time never see half a copy."""
    target = GGUF_CACHE / f"{Path(gguf_file).stem}-{models.fingerprint(folder)}"
    if target.is_dir():
        return target
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    model.hf_quantizer = None  # the weights are plain float32 tensors now; transformers won't save a GGUF model
    GGUF_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=GGUF_CACHE))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():  # else another process got there first, with the same content
            raise
    return target


NLL_BATCH_TOKENS = 4096  # padded tokens per fluency batch (see TransformersLLM.mean_nll)


def token_batches(lengths: list[int], budget: int, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) slices of at most `max_rows` texts whose padded size (rows x longest) stays within
    `budget` tokens; a text longer than the budget goes alone."""
    slices, start, longest = [], 0, 0
    for i, length in enumerate(lengths):
        wider = max(longest, length)
        if i > start and (i - start >= max_rows or wider * (i - start + 1) > budget):
            slices.append((start, i))
            start, wider = i, length
        longest = wider
    if start < len(lengths):
        slices.append((start, len(lengths)))
    return slices


class TransformersLLM:
    """A local causal LM loaded once; greedy decoding, so the same prompts give the same text."""

    def __init__(self, model: str, device: str = "auto", max_new_tokens: int = 64, batch_size: int = 8):
        folder = _weights(model)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.name, self.device = model, torch.device(device)
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # Left padding: every prompt of a batch then ends where generation (or the next-token read) starts.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(folder).to(self.device).eval()
        # Only words that are one token: a longer word's first piece ("Y") would count unrelated text.
        words = {w: self.tokenizer.encode(w, add_special_tokens=False) for w in YES_WORDS + NO_WORDS}
        self.yes_ids = sorted({ids[0] for w, ids in words.items() if len(ids) == 1 and w in YES_WORDS})
        self.no_ids = sorted({ids[0] for w, ids in words.items() if len(ids) == 1 and w in NO_WORDS})
        eos = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos])
        self.control_tokens = control_tokens(self.tokenizer)

    def __repr__(self) -> str:
        return f"TransformersLLM({self.name!r}, device={str(self.device)!r})"

    def _inputs(self, batch: list[Messages], answer_prefix: str = "") -> dict:
        batch = _texts_only(batch, self.control_tokens)  # the template writes the control tokens, no text does
        if answer_prefix:  # the assistant has already said `answer_prefix`; the next token is the answer
            turns = [[*m, {"role": "assistant", "content": answer_prefix}] for m in batch]
            prompts = self.tokenizer.apply_chat_template(turns, tokenize=False, continue_final_message=True)
        else:
            prompts = self.tokenizer.apply_chat_template(batch, tokenize=False, add_generation_prompt=True)
        # The chat template already holds the special tokens; adding them again would double the BOS.
        return self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    @torch.inference_mode()
    def generate(
        self, batch: list[Messages], max_new_tokens: int | None = None, logprobs: int = 0, schema: dict | None = None
    ) -> list[Completion]:
        """One completion per conversation; `logprobs=k` adds the top k alternatives of every generated token. With
        a JSON `schema`, the reply is made to open as its object does (`{"edited": "`): the model writes only
        the value, which is where small models go wrong least; the completion includes the forced opening. With
        one field, decoding also stops where the value ends and the object is closed there, as decoding held to
        the schema would (a small model goes on to invent more keys)."""
        completions, opening = [], reply_opening(schema)
        one_value = bool(opening) and len(schema["properties"]) == 1
        stops = {"stop_strings": [opening[-1] if opening.endswith('"') else "]"], "tokenizer": self.tokenizer}
        for start in range(0, len(batch), self.batch_size):
            inputs = self._inputs(batch[start : start + self.batch_size], opening)
            result = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens or self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                output_logits=logprobs > 0,
                return_dict_in_generate=True,
                **(stops if one_value else {}),
            )
            for row, ids in enumerate(result.sequences[:, inputs["input_ids"].shape[1] :].tolist()):
                length = next((i for i, token in enumerate(ids) if token in self.stop_ids), len(ids))
                text = opening + self.tokenizer.decode(ids[:length], skip_special_tokens=True)
                text = closed_after_value(text, opening) if one_value else text
                steps = range(length) if logprobs else ()
                top = [self._token_logprobs(result.logits[i][row], ids[i], logprobs) for i in steps]
                completions.append(Completion(text=text, logprobs=top or None))
        return completions

    def _token_logprobs(self, logits: torch.Tensor, chosen: int, k: int) -> dict:
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        top = [{"token": self.tokenizer.decode([i]), "logprob": float(logprobs[i])} for i in logprobs.topk(k).indices]
        return {"token": self.tokenizer.decode([chosen]), "logprob": float(logprobs[chosen]), "top_logprobs": top}

    def _plain_inputs(self, texts: list[str]) -> dict:
        texts = [as_text(text, self.control_tokens) for text in texts]
        return self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="right").to(self.device)

    @torch.inference_mode()
    def mean_nll(self, texts: list[str]) -> list[float]:
        """Mean negative log-likelihood (nats) per predicted token of each plain text, no chat template: fluency.
        Batches hold at most `NLL_BATCH_TOKENS` padded tokens: the logits are tokens x vocabulary floats (twice,
        with the softmax), so 32 documents of 1,000 tokens would take 12 GB; this bound keeps it near 1.5 GB."""
        lengths = [len(ids) for ids in self.tokenizer([as_text(t, self.control_tokens) for t in texts])["input_ids"]]
        scores = []
        for start, end in token_batches(lengths, NLL_BATCH_TOKENS, self.batch_size):
            # Right padding: real tokens keep positions 0..n whatever else is in the batch, so scores don't
            # depend on batching.
            inputs = self._plain_inputs(texts[start:end])
            logits = self.model(**inputs).logits[:, :-1].float()
            targets, mask = inputs["input_ids"][:, 1:], inputs["attention_mask"][:, 1:].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            scores += ((nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).tolist()
        return scores

    def answer(
        self, batch: list[Messages], answer_prefix: str = "", max_new_tokens: int = 12
    ) -> list[tuple[Completion, float]]:
        """Each conversation's reply, and P(yes) from the logits with `answer_prefix` forced (`yes_probability`)."""
        return list(zip(self.generate(batch, max_new_tokens), self.yes_probability(batch, answer_prefix)))

    @torch.inference_mode()
    def yes_probability(self, batch: list[Messages], answer_prefix: str = "") -> list[float]:
        """P(yes) / (P(yes) + P(no)) over the whole next-token distribution after the assistant prefix, plus
        `answer_prefix` as if the assistant had said it (e.g. `{"relevant": "` puts a JSON answer's word next)."""
        probabilities = []
        for start in range(0, len(batch), self.batch_size):
            inputs = self._inputs(batch[start : start + self.batch_size], answer_prefix)
            # Positions must skip the left padding, as generate() does, or padded rows see shifted positions.
            positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            probs = torch.softmax(self.model(**inputs, position_ids=positions).logits[:, -1].float(), dim=-1)
            yes, no = probs[:, self.yes_ids].sum(-1), probs[:, self.no_ids].sum(-1)
            probabilities.extend((yes / (yes + no).clamp(min=1e-30)).tolist())
        return probabilities


# The server's answer about one item (a prompt too long, a request it cannot process): that item fails, the
# stage goes on. Every other 4xx, and a redirect, says the endpoint, key or model is wrong: the stage fails.
ITEM_STATUS = (400, 413, 422)
# Items in a row that failed after every retry: the endpoint is down, not unlucky (at a 30 % fault rate and 3
# retries, one item in 120 fails; eight in a row, about one run in 10^16).
ITEMS_IN_A_ROW = 8


class _RefuseRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # following it would send the Authorization header wherever it points; it ends as http_3xx


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirect)


@dataclass
class OpenAICompatibleLLM:
    """Chat completions from any OpenAI-compatible server, `concurrency` requests at a time. The API key is read
    from the environment variable `api_key_env` at each request and never kept on the object, so it cannot reach
    a repr, a pickle, a log line or a Completion."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_new_tokens: int = 64
    temperature: float = 0.0
    max_retry_after_s: float = 60.0
    # Whether the server takes `response_format` with a JSON schema; None: not asked yet. A server that refuses it
    # (HTTP 400 / 422 on the first request that carries one) is asked without it from then on.
    takes_schema: bool | None = None
    # Why no request goes out any more (None: they do): the endpoint refused the work, or stopped answering.
    # Set by the first request that shows it; `generate` then raises EndpointError with it.
    stopped: str | None = field(default=None, init=False, repr=False)
    # Items that failed after their retries since the last that did not: the request threads update it without a
    # lock, so "in a row" is as the threads finished, give or take one; it only has to tell an outage from bad luck.
    _failed_in_a_row: int = field(default=0, init=False, repr=False)

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        self.base_url = self.base_url.rstrip("/")

    def preflight(self) -> None:
        """One short request before the stage's work: EndpointError, naming the fix, when the endpoint refuses it
        (401, 403, 404, a redirect) or never answers (no connection, no reply in time, after the retries). Any
        other reply, a 500 included, says it is there: how often it fails is the failure budget's to judge."""
        body = {"model": self.model, "max_tokens": 1, "temperature": 0.0}
        reply = self._complete(json.dumps(body | {"messages": [{"role": "user", "content": "ping"}]}).encode())
        if self.stopped:
            raise EndpointError(self.stopped)
        if reply.error in ("connection_error", "timeout"):
            raise EndpointError(
                f"the endpoint {self.base_url} did not answer ({reply.error}, {self.max_retries} retries): is it "
                f"running, and reachable from this machine?"
            )
        self._failed_in_a_row = 0  # the items' own count starts with them

    def _refusal(self, error: str) -> str:
        code = int(error.removeprefix("http_"))
        where = f"the endpoint {self.base_url} (model {self.model!r})"
        if code in (401, 403):
            key = "is not set" if not os.environ.get(self.api_key_env) else "holds a key it does not accept"
            return f"{where} refused the request (HTTP {code}): the variable {self.api_key_env} {key}"
        if code == 404:
            return (f"{where} answered HTTP 404: check llm_base_url (the part before /chat/completions, often "
                    f"ending in /v1) and llm_model")  # fmt: skip
        if 300 <= code < 400:
            return (f"{where} redirects (HTTP {code}), which is not followed (it would carry the API key elsewhere): "
                    f"set llm_base_url to the address it points to")  # fmt: skip
        return f"{where} refused the request (HTTP {code})"

    def generate(
        self, batch: list[Messages], max_new_tokens: int | None = None, logprobs: int = 0, schema: dict | None = None
    ) -> list[Completion]:
        """One completion per conversation, in order; failures come back as Completion(text=None, error=...). With
        a JSON `schema`, asked for as `response_format` (structured outputs) where the server takes it."""
        common = dict(model=self.model, max_tokens=max_new_tokens or self.max_new_tokens, temperature=self.temperature)
        if logprobs:
            common |= {"logprobs": True, "top_logprobs": logprobs}
        if schema is not None and self.takes_schema is not False:
            format_ = {"type": "json_schema", "json_schema": {"name": "record", "schema": schema, "strict": True}}
            if self.takes_schema is None and batch:  # one request finds out, before the batch goes out in parallel
                first = self._complete(
                    json.dumps({**common, "messages": batch[0], "response_format": format_}).encode()
                )
                if first.error in ("http_400", "http_422"):
                    self.takes_schema = False
                    return self.generate(batch, max_new_tokens, logprobs, schema)
                self.takes_schema = True if first.error is None else None  # a failure of another kind tells nothing
                return [first, *self.generate(batch[1:], max_new_tokens, logprobs, schema)]
            common["response_format"] = format_
        bodies = [json.dumps({**common, "messages": messages}).encode() for messages in batch]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            completions = list(pool.map(self._complete, bodies))
        if self.stopped:
            raise EndpointError(self.stopped)
        return completions

    def answer(
        self, batch: list[Messages], answer_prefix: str = "", max_new_tokens: int = 12
    ) -> list[tuple[Completion, float | None]]:
        """Each conversation's reply and P(yes) / (P(yes) + P(no)) from the server's top-5 logprobs (None where it
        gives none), both from one request: a probability never comes from another request than its reply, which
        might have failed where this one did not. The chat API cannot continue a partial assistant turn, so the
        answer slot is the first word after the reply says `answer_prefix`."""
        completions = self.generate(batch, max_new_tokens=max(max_new_tokens, len(answer_prefix) + 4), logprobs=5)
        return [(c, yes_probability_from_logprobs(c.logprobs, after=answer_prefix)) for c in completions]

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        return {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})

    def _complete(self, body: bytes) -> Completion:
        """One item: `_request`, and what its outcome says about the endpoint. Once the endpoint has refused the
        work or stopped answering, the items still queued are not sent."""
        if self.stopped:
            return Completion(text=None, error="not_sent", attempts=0)
        completion = self._request(body)
        error = completion.error
        self._failed_in_a_row = self._failed_in_a_row + 1 if passing_failure(error) else 0
        refused = error and error.startswith("http_") and not passing_failure(error)
        if refused and int(error.removeprefix("http_")) not in ITEM_STATUS:
            self.stopped = self.stopped or self._refusal(error)
        if self._failed_in_a_row >= ITEMS_IN_A_ROW:
            self.stopped = self.stopped or (
                f"the endpoint {self.base_url} stopped answering: {ITEMS_IN_A_ROW} items in a row failed after "
                f"{self.max_retries} retries each (the last: {error})"
            )
        return completion

    def _request(self, body: bytes) -> Completion:
        """One item, retried with exponential backoff (at least Retry-After when sent) up to max_retries times."""
        for attempt in range(1, self.max_retries + 2):
            wait = self.backoff_s * 2 ** (attempt - 1)
            try:
                request = urllib.request.Request(self.base_url + "/chat/completions", body, self._headers())
                deadline = time.monotonic() + self.timeout_s
                with _NO_REDIRECTS.open(request, timeout=self.timeout_s) as response:
                    text, logprobs = _parse_reply(_read_within(response, deadline))
                return Completion(text=text, attempts=attempt, logprobs=logprobs)
            except _TooLarge:  # the same request would bring the same reply: not retried
                return Completion(text=None, error="response_too_large", attempts=attempt)
            except urllib.error.HTTPError as err:
                error = f"http_{err.code}"
                wait = max(wait, _retry_after_s(err.headers.get("Retry-After"), self.max_retry_after_s))
                err.close()
                if err.code not in RETRIED_STATUS and err.code < 500:
                    return Completion(text=None, error=error, attempts=attempt)
            except (ValueError, http.client.IncompleteRead):
                error = "malformed_response"
            except (OSError, http.client.HTTPException) as err:  # URLError carries the socket's error as `reason`
                error = "timeout" if isinstance(getattr(err, "reason", err), TimeoutError) else "connection_error"
            if attempt <= self.max_retries:
                time.sleep(wait)
        return Completion(text=None, error=error, attempts=self.max_retries + 1)


MAX_REPLY_BYTES = 8 << 20  # a chat completion, logprobs included, is kilobytes; more is a broken or hostile server


class _TooLarge(Exception):
    pass


def _read_within(response, deadline: float) -> bytes:
    """The reply's body, read as it arrives until `deadline` (a server trickling bytes resets every socket timeout,
    never this one) and at most MAX_REPLY_BYTES."""
    chunks, size = [], 0
    while chunk := response.read1(1 << 16):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise _TooLarge
        if time.monotonic() > deadline:
            raise TimeoutError("the whole request took longer than timeout_s")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_reply(payload: bytes) -> tuple[str, list[dict] | None]:
    """Text and token logprobs of the first choice; ValueError when the body is not a chat completion."""
    try:
        choice = json.loads(payload)["choices"][0]
        text, logprobs = choice["message"]["content"], (choice.get("logprobs") or {}).get("content")
        if not isinstance(text, str):
            raise TypeError("completion text is not a string")
    except (KeyError, IndexError, TypeError, AttributeError) as err:
        raise ValueError("not a chat completion") from err
    return text, logprobs if isinstance(logprobs, list) and logprobs else None


def _retry_after_s(value: str | None, cap: float) -> float:
    """Retry-After is seconds or an HTTP date; an unreadable value counts as 0 (plain backoff applies)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return 0.0
    return min(max(seconds, 0.0), cap)


class VLLMLLM:
    """vLLM in this process: the engine of one GPU actor (`pipeline.work.llm_call` sizes the pool: one engine per
    actor, `tensor_parallel_size` GPUs each), loaded once and kept for the stage, greedy. The model resolves like
    the transformers backend's (`packaged:` names, folders, GGUF converted once); P(yes) comes from the engine's
    logprobs, so a judge's answer is a probability, not 0 or 1."""

    def __init__(
        self, model: str, max_new_tokens: int = 64, tensor_parallel_size: int = 1, engine_options: dict | None = None
    ):
        if importlib.util.find_spec("vllm") is None:  # fail at load, with the fix
            raise RuntimeError(VLLM_MISSING)
        from vllm import LLM

        self.max_new_tokens = max_new_tokens
        self.engine = LLM(model=str(_weights(model)), tensor_parallel_size=tensor_parallel_size, seed=0,
                          **(engine_options or {}))  # fmt: skip
        self.control_tokens = control_tokens(self.engine.get_tokenizer())

    def _chat(
        self, batch: list[Messages], max_tokens: int, logprobs: int, schema: dict | None = None, **chat_options
    ) -> list:
        """One vLLM RequestOutput per conversation, or an error code where vLLM refused it: it refuses a whole
        batch for one bad prompt (longer than the model's context, say), so such a batch is asked item by item.
        A JSON `schema` constrains decoding (vLLM's guided decoding / structured outputs)."""
        from vllm import SamplingParams

        constraint = _vllm_json_constraint(schema) if schema is not None else {}
        sampling = SamplingParams(
            temperature=0.0, max_tokens=max_tokens, logprobs=logprobs or None, seed=0, **constraint
        )
        batch = _texts_only(batch, self.control_tokens)
        try:
            return self.engine.chat(batch, sampling, use_tqdm=False, **chat_options)
        except ValueError:
            outputs = []
            for messages in batch:
                try:
                    outputs += self.engine.chat([messages], sampling, use_tqdm=False, **chat_options)
                except ValueError as err:
                    outputs.append("prompt_too_long" if "longer than the maximum" in str(err) else BACKEND_ERROR)
            return outputs

    def generate(
        self, batch: list[Messages], max_new_tokens: int | None = None, logprobs: int = 0, schema: dict | None = None
    ) -> list[Completion]:
        completions = []
        for output in self._chat(batch, max_new_tokens or self.max_new_tokens, logprobs, schema):
            if isinstance(output, str):
                completions.append(Completion(text=None, error=output))
                continue
            reply = output.outputs[0]
            completions.append(Completion(text=reply.text, logprobs=_vllm_steps(reply) if logprobs else None))
        return completions

    def answer(
        self, batch: list[Messages], answer_prefix: str = "", max_new_tokens: int = 12
    ) -> list[tuple[Completion, float | None]]:
        """Each conversation's reply, and P(yes) from the engine's logprobs with `answer_prefix` forced."""
        return list(zip(self.generate(batch, max_new_tokens), self.yes_probability(batch, answer_prefix)))

    def yes_probability(self, batch: list[Messages], answer_prefix: str = "") -> list[float | None]:
        """P(yes) / (P(yes) + P(no)) among the top 20 next tokens after the assistant prefix plus `answer_prefix`,
        as if the assistant had said it (the transformers backend reads the same slot from its logits)."""
        turns = [[*m, {"role": "assistant", "content": answer_prefix}] for m in batch] if answer_prefix else batch
        options = {"add_generation_prompt": False, "continue_final_message": True} if answer_prefix else {}
        outputs = self._chat(turns, 1, 20, **options)
        return [
            None if isinstance(o, str) else yes_probability_from_logprobs(_vllm_steps(o.outputs[0])) for o in outputs
        ]


def _vllm_json_constraint(schema: dict) -> dict:
    """SamplingParams keywords that hold decoding to a JSON schema: `structured_outputs` from vLLM 0.11 on,
    `guided_decoding` before it."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    return {"structured_outputs": StructuredOutputsParams(json=schema)}


def reply_opening(schema: dict | None) -> str:
    """What a reply that fits `schema` must begin with, up to its first value: `{"edited": "` for a string,
    `{"queries": ["` for a list of strings."""
    if not schema or not schema.get("properties"):
        return ""
    name, spec = next(iter(schema["properties"].items()))
    opening = {"string": '"', "array": '["' if spec.get("items", {}).get("type") == "string" else "["}
    return "{" + json.dumps(name) + ": " + opening.get(spec.get("type"), "")


def closed_after_value(text: str, opening: str) -> str:
    """`text` (a reply that began with `opening`) cut where its one value ends, and its object closed there."""
    start = len(opening) - (2 if opening.endswith('["') else 1)
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:  # the value did not end within the token budget: the reply stays as it is (unparseable)
        return text
    return text[:end] + "}"


def _vllm_steps(reply) -> list[dict]:
    """vLLM's per-token logprobs ({token id: Logprob}) in the OpenAI form the rest of this module reads."""
    steps = []
    for token_id, alternatives in zip(reply.token_ids, reply.logprobs or []):
        chosen = alternatives[token_id]
        top = [{"token": a.decoded_token, "logprob": a.logprob} for a in alternatives.values()]
        steps.append({"token": chosen.decoded_token, "logprob": chosen.logprob, "top_logprobs": top})
    return steps


def load(backend: str, model: str, **options) -> TransformersLLM | OpenAICompatibleLLM | VLLMLLM:
    """The LLM named in params: backend `transformers`, `openai` (options: base_url, ...) or `vllm`."""
    if backend == "transformers":
        return TransformersLLM(model, **options)
    if backend == "openai":
        return OpenAICompatibleLLM(model=model, **options)
    if backend == "vllm":
        return VLLMLLM(model, **options)
    raise ValueError(f"unknown LLM backend {backend!r}; use transformers, openai or vllm")
