"""The replier: every inbound text gets one LLM-written reply, plain or contextual.

Per message (``reply_to``): ``_start`` — skip if it already has a reply, defer if it is not the
user's turn (one Redis round trip); ``_completion`` — build the conversation and ask the LLM
(fallback ``Noted.``) while "typing…" shows; ``_send`` — decide contextual or standalone at
send time and send; ``_record`` — ReplySent. A user's messages are handled in log order, also
across batches the runtime handles at the same time; different users concurrently.

At most one confirmed send per message: before calling the Graph API the replier takes the
message's reply outcome (``reply_outcome``: ``SET NX`` = ``sending:<consumer>:<ms>``, in the
pace's script call where it can be: ``send_gate``); a definite failure releases it; a 200
turns it into ``sent:<wamid>`` in the same Lua step that appends ReplySent. A redelivery
that finds ``sending:`` left by a crashed attempt cannot know whether Meta got the message, so
it does not resend: the entry is dead-lettered as "in doubt"
(docs/decisions/0003-reply-at-most-once.md). So is a send whose request may have reached Meta
before the connection failed (``GraphSendInDoubt``): the outcome stays ``sending:``. With
``MECOVE_REDIS_MIN_REPLICAS`` k > 0 the ``sending:`` must reach k replicas before the send;
if it does not in time, nothing is sent and the entry comes back later (``RetryLater``).

Pacing (docs/decisions/0008-reply-pacing.md): before the LLM and again right before the send,
the ``Pacer`` says whether the recipient's pair limiter (and the number's throughput) lets the
reply go. If not, or if Meta answers 131056 / a throughput error anyway, the reply waits in its
recipient's line and the entry is deferred (``RetryLater``) without spending an attempt; other
users' replies go on. After waiting longer than the give-up time it fails (``PacingGaveUp``).
While the LLM thinks the user sees "typing…" (``TypingIndicator``), never holding the reply up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.platform.clock import now_ms
from app.platform.eventlog.append import content_keys_for
from app.platform.eventlog.entries import as_text
from app.platform.eventlog.keys import Keys
from app.platform.http_transport import transport_for_environment
from app.platform.metrics import GRAPH_SENDS
from app.platform.redis_client import ReplicaShortfall
from app.platform.runtime.handler import Delivery, GroupHandler
from app.platform.runtime.retry_policy import NonRetryableError, RetryableError, RetryLater
from app.platform.settings import Settings
from consumers.llm.chat_client import ChatClient, Completion
from consumers.llm.llm_config import LlmConfig, load_llm_config
from consumers.replier.conversation_prompt import format_conversation
from consumers.replier.conversation_store import ConversationStore
from consumers.replier.reply_mode import ReplyMode, ReplyModeRule, decide_reply_mode
from consumers.replier.reply_outcome import ReplyOutcomes, is_final, is_sent, sending_state
from consumers.replier.send_gate import Gate, SendGate
from consumers.replier.typing_indicator import TypingIndicator
from consumers.whatsapp.graph_client import (
    GraphClient,
    GraphPairLimited,
    GraphSendInDoubt,
    GraphThroughputLimited,
)
from consumers.whatsapp.pacer import Pacer, Pacing, log_order
from consumers.whatsapp.pacing_rule import PaceRule
from schema.events import MessageReceived, ReplyFailed, ReplySent
from schema.ids import event_id_for

log = logging.getLogger("mecove.replier")

# "typing…" is a courtesy: it may hold the reply up this long at most.
TYPING_TIMEOUT_S = 2.0
# A claim the required replicas did not confirm: try again this much later (no attempt spent).
SHORTFALL_RETRY_MS = 1_000


class ReplyInDoubt(NonRetryableError):
    """A previous attempt died while sending: resending could deliver the reply twice."""


class PacingGaveUp(NonRetryableError):
    """The reply waited for the pace Meta allows longer than the give-up time."""


@dataclass(frozen=True, slots=True)
class _Sent:
    """What a send left to record: Meta's id for the reply (None in dry-run) and its mode."""

    outbound_id: str | None
    mode: ReplyMode


def _raise_errors(answers: list[Any]) -> list[Any]:
    """The answers of a pipeline run with ``raise_on_error=False``; raises the first error."""
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers


class ReplyHandler(GroupHandler):
    group = "replier"
    min_batch_size = 1  # the configured batch size applies

    def __init__(
        self,
        *,
        redis: Redis,
        outcomes: ReplyOutcomes,
        store: ConversationStore,
        chat: ChatClient,
        llm: LlmConfig,
        graph: GraphClient | None,
        rule: ReplyModeRule,
        consumer_name: str,
        pacer: Pacer | None = None,
        typing: TypingIndicator | None = None,
        gate: SendGate | None = None,
        concurrency: int = 32,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.redis = redis
        self.outcomes = outcomes
        self.store = store
        self.chat = chat
        self.llm = llm
        self.graph = graph
        self.rule = rule
        self.consumer_name = consumer_name
        self.pacer = pacer
        self.typing = typing
        self.gate = gate  # the pace and the claim in one step (None: two)
        self.clock_ms = clock_ms
        self._slots = asyncio.Semaphore(concurrency)
        self._user_turns: dict[str, asyncio.Future[None]] = {}  # the last batch's turn, per user
        if graph is None:
            log.warning("DRY-RUN: WHATSAPP_PHONE_NUMBER_ID / WHATSAPP_PERMANENT_TOKEN not set; "
                        "replies are recorded but NOT sent to WhatsApp")

    async def start(self) -> None:
        return None  # nothing runs in the background

    async def handle(self, deliveries: list[Delivery]) -> Sequence[BaseException | None]:
        outcomes: dict[str, BaseException | None] = {}
        by_user: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            if isinstance(delivery.event, MessageReceived):
                by_user[delivery.event.user_id].append(delivery)
            else:
                outcomes[delivery.entry_id] = None  # not a replier's event
        # Taken before any await: batches read later wait for this one, user by user.
        turns = {user_id: self._take_turn(user_id) for user_id in by_user}

        async def one_user(user_id: str, items: list[Delivery]) -> None:
            earlier, mine = turns[user_id]
            try:
                if earlier is not None:
                    await asyncio.wait((earlier,))  # the user's replies of an earlier batch
                async with self._slots:
                    # Retries come in due order; a user's replies go in log order.
                    for delivery in sorted(items, key=lambda d: log_order(d.entry_id)):
                        try:
                            await self.reply_to(delivery)
                            outcomes[delivery.entry_id] = None
                        except Exception as exc:  # noqa: BLE001 - an outcome for the runtime
                            outcomes[delivery.entry_id] = exc
            finally:
                mine.set_result(None)
                if self._user_turns.get(user_id) is mine:
                    del self._user_turns[user_id]

        await asyncio.gather(*(one_user(u, items) for u, items in by_user.items()))
        return [outcomes[d.entry_id] for d in deliveries]

    def _take_turn(self, user_id: str) -> tuple[asyncio.Future[None] | None,
                                                 asyncio.Future[None]]:
        """The user's turn: (the turn to wait for, if any; this one, to finish when done)."""
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        earlier = self._user_turns.get(user_id)
        self._user_turns[user_id] = mine
        return earlier, mine

    async def reply_to(self, delivery: Delivery) -> None:
        """Reply to one MessageReceived: decide to start, ask the LLM with the conversation,
        send (at most once, paced), record ReplySent. Raises what the runtime settles."""
        message = delivery.event
        assert isinstance(message, MessageReceived)
        fields = {"event_id": message.event_id, "message_id": message.message_id,
                  "attempt": delivery.attempt}
        order = log_order(delivery.entry_id)
        recent_ids = await self._start(delivery, message, order, fields)
        if recent_ids is None:
            return
        completion = await self._completion(message, recent_ids)
        sent = await self._send(message, order, completion, fields)
        if sent is not None:
            await self._record(message, completion, sent, fields)

    async def _start(self, delivery: Delivery, message: MessageReceived, order: int,
                     fields: dict[str, object]) -> list[bytes] | None:
        """Whether to reply now, from one round trip (the outcome, the user's recent ids and
        the pair limiter's word): the recent ids to go on, None when already replied.
        Raises ``ReplyInDoubt`` (an earlier attempt died sending) or a deferral (not the
        user's turn yet: deferred before spending an LLM call)."""
        outcome_key = self.outcomes.key(message.user_id, message.message_id)
        pacer = self.pacer if self.graph is not None else None
        async with self.redis.pipeline(transaction=False) as pipe:
            self.outcomes.queue_read(pipe, outcome_key)
            self.store.queue_recent_ids(pipe, message)
            pacing_queued = pacer is not None and pacer.queue_may_go(
                pipe, message.user_id, message.message_id, order)
            answers = await pipe.execute(raise_on_error=False)
        raw_state, recent_ids = _raise_errors(answers[:2])
        state = as_text(raw_state)
        if state is not None and delivery.operator_retry and not is_sent(state):
            # An operator chose to retry a failed or in-doubt reply: they accepted the risk.
            log.warning("operator retry: clearing the previous outcome",
                        extra={"fields": {**fields, "previous": state}})
            await self.outcomes.clear(outcome_key)
            state = None
        if state is not None:
            if is_final(state):
                log.info("already replied; skipped", extra={"fields": fields})
                await self._leave_line(message)
                return None
            raise ReplyInDoubt(f"reply in doubt: an earlier attempt ({state}) stopped while "
                               "sending; not resent so the user never gets it twice")
        if self._outcome_may_have_expired(message) and \
                await self.store.already_replied_in_database(message.message_id):
            log.info("already replied (database); skipped", extra={"fields": fields})
            await self._leave_line(message)
            return None
        if pacer is not None:
            pacing = await pacer.may_go_answer(answers[2], message.user_id, message.message_id,
                                               order) if pacing_queued else \
                await pacer.may_go(message.user_id, message.message_id, order)
            if not pacing.go:
                raise self._deferred(pacing, "pair rate limit")
        return list(recent_ids)

    async def _completion(self, message: MessageReceived, recent_ids: list[bytes]) -> Completion:
        """The LLM's reply to the conversation up to ``message`` (or the fallback), with
        "typing…" shown meanwhile; the turns, the user's key (when not cached) and the typing
        marker come in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            window = self.store.queue_turns(pipe, message, recent_ids)
            key_id = self.store.queue_key(pipe, message)
            if self.typing is not None:
                self.typing.queue_claim(pipe, message)
            answers = await pipe.execute(raise_on_error=False)
        if key_id is not None:
            self.store.key_from(key_id, answers[len(window)])
        typing = asyncio.create_task(self.typing.show_claimed(message, answers[-1])) \
            if self.typing is not None else None
        try:
            rows = _raise_errors(answers[:len(window)])
            turns = await self.store.turns_from(message, window, rows)
            return await self.chat.complete(
                self.llm.reply.system_prompt, format_conversation(turns),
                self.llm.reply.fallback_text)
        finally:
            if typing is not None:
                await typing  # bounded by its own short timeout; never raises

    async def _send(self, message: MessageReceived, order: int, completion: Completion,
                    fields: dict[str, object]) -> _Sent | None:
        """Send the reply once (dry-run: only decide its mode); None when another attempt
        replied meanwhile. Takes the pace's slot, then the outcome (``sending:``) with the
        reply mode's count in one round trip, then calls the Graph API."""
        if self.graph is None:
            messages_after = await self._messages_after(message)
            GRAPH_SENDS.labels("dry_run").inc()
            return _Sent(None, decide_reply_mode(messages_after, message.received_at,
                                                 self.clock_ms(), self.rule))
        outcome_key = self.outcomes.key(message.user_id, message.message_id)
        gate: Gate | None = None
        if self.pacer is not None:
            now = self.clock_ms()
            gate = await self._pace(message, order, outcome_key, now)
            if not gate.pacing.go:
                raise self._deferred(gate.pacing, "pair or throughput limit")
            if gate.pacing.at_ms > now:
                await asyncio.sleep((gate.pacing.at_ms - now) / 1000)  # the number's pace
        if gate is not None and gate.claimed:  # the pace and the claim came in one step
            sending = sending_state(self.consumer_name, now)
            messages_after, taken = gate.messages_after, gate.taken
        else:
            now = self.clock_ms()
            sending = sending_state(self.consumer_name, now)
            try:
                messages_after, taken = await self._messages_after_and_take(
                    message, outcome_key, sending)
            except ReplicaShortfall as exc:
                # The claim would not survive a failover: sending now could send twice.
                raise RetryLater(self.clock_ms() + SHORTFALL_RETRY_MS,
                                 f"reply claim not confirmed by replicas: {exc}") from exc
        mode = decide_reply_mode(messages_after, message.received_at, now, self.rule)
        if not taken:
            current = await self.outcomes.read(outcome_key)
            if current is not None and is_final(current):
                log.info("replied meanwhile by another attempt; skipped",
                         extra={"fields": fields})
                return None
            raise ReplyInDoubt("reply in doubt: another attempt holds the send")
        try:
            outbound_id = await self.graph.send_text(
                message.sender_phone, completion.text,
                message.source_message_id if mode is ReplyMode.CONTEXTUAL else None,
                recipient=message.sender_bsuid,
            )
        except GraphSendInDoubt as exc:
            # Meta may have the message: keep ``sending:`` so no attempt resends it.
            GRAPH_SENDS.labels("in_doubt").inc()
            raise ReplyInDoubt(f"reply in doubt: {exc}") from exc
        except Exception as exc:
            # Meta answered with an error or never got the request: nothing was sent.
            await self.outcomes.release(outcome_key, sending)
            raise await self._after_send_error(message, order, exc) from exc
        GRAPH_SENDS.labels("sent").inc()
        return _Sent(outbound_id, mode)

    async def _pace(self, message: MessageReceived, order: int, outcome_key: str,
                    now: int) -> Gate:
        """The pace's slots; through the send gate also the claim (``sending:`` of ``now``)
        and the reply mode's count, when the reply may go at once."""
        assert self.pacer is not None
        if self.gate is None:
            return Gate(await self.pacer.take(message.user_id, message.message_id, order),
                        claimed=False)
        tracking, after = self.store.messages_after_inputs(message)
        return await self.gate.take(
            self.pacer.take_inputs(message.user_id, message.message_id, order), tracking, after,
            outcome_key, sending_state(self.consumer_name, now), self.outcomes.outcome_ttl_s)

    async def _record(self, message: MessageReceived, completion: Completion, sent: _Sent,
                      fields: dict[str, object]) -> None:
        """Make the outcome final and append ReplySent, in one Lua step."""
        replied_at = self.clock_ms()
        await self.outcomes.record(ReplySent(
            event_id=event_id_for("ReplySent", message.message_id),
            occurred_at=replied_at,
            message_id=message.message_id,
            user_id=message.user_id,
            reply_text=completion.text,
            replied_at=replied_at,
            contextual=sent.mode is ReplyMode.CONTEXTUAL,
            outbound_message_id=sent.outbound_id,
            model=completion.model,
            fallback_used=completion.fallback_used,
            dry_run=self.graph is None,
        ), message_text=message.text)
        log.info("reply sent" if self.graph else "reply recorded (dry-run)", extra={"fields": {
            **fields, "mode": sent.mode.value, "fallback": completion.fallback_used,
            "latency_ms": replied_at - message.received_at}})

    async def _messages_after(self, message: MessageReceived) -> int:
        """How many of the user's messages came after this one (for the reply mode)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self.store.queue_messages_after(pipe, message)
            (count,) = await pipe.execute()
        return int(count)

    async def _messages_after_and_take(self, message: MessageReceived, outcome_key: str,
                                       sending: str) -> tuple[int, bool]:
        """In one round trip: how many of the user's messages came after this one (for the
        reply mode, decided at send time) and whether ``sending`` was taken (confirmed on the
        required replicas, else ReplicaShortfall and nothing taken)."""
        (count,), taken = await self.outcomes.take(
            outcome_key, sending, reads=lambda pipe: self.store.queue_messages_after(pipe, message))
        return int(count), taken

    def _outcome_may_have_expired(self, message: MessageReceived) -> bool:
        """Whether a reply outcome recorded for ``message`` could have expired from Redis:
        outcomes are written after the message arrived and kept ``outcome_ttl_s``, so for a
        younger message Redis alone answers and PostgreSQL stays off the hot path."""
        return self.clock_ms() - message.received_at >= self.outcomes.outcome_ttl_s * 1000

    async def _after_send_error(self, message: MessageReceived, order: int,
                                error: Exception) -> Exception:
        """What a send that Meta refused becomes: a deferral for its rate limits (the reply
        waits in its line), the error itself otherwise."""
        if self.pacer is None or not isinstance(error, GraphPairLimited | GraphThroughputLimited):
            GRAPH_SENDS.labels("retryable_error" if isinstance(error, RetryableError)
                               else "permanent_error").inc()
            return error
        if isinstance(error, GraphPairLimited):
            GRAPH_SENDS.labels("pair_limited").inc()
            pacing = await self.pacer.pair_blocked(message.user_id, message.message_id, order)
            return self._deferred(pacing, str(error))
        GRAPH_SENDS.labels("throughput_limited").inc()
        pacing = await self.pacer.throughput_blocked(message.user_id, message.message_id, order)
        return self._deferred(pacing, str(error))

    def _deferred(self, pacing: Pacing, reason: str) -> Exception:
        """``RetryLater`` at the reply's turn, or ``PacingGaveUp`` once it waited too long."""
        assert self.pacer is not None
        waited = self.clock_ms() - pacing.waiting_since_ms
        if pacing.waiting_since_ms and waited >= self.pacer.give_up_ms:
            return PacingGaveUp(f"gave up after waiting {waited} ms for the pace Meta allows "
                                f"(last: {reason})")
        return RetryLater(pacing.at_ms, reason)

    async def _leave_line(self, message: MessageReceived) -> None:
        if self.pacer is not None:
            await self.pacer.leave_line(message.user_id, message.message_id)

    async def on_dead_letter(self, delivery: Delivery, error: BaseException | str) -> None:
        """Given up on: record ReplyFailed (not for "in doubt", which a human must judge)."""
        message = delivery.event
        if not isinstance(message, MessageReceived):
            return
        await self._leave_line(message)  # its user's later replies need not wait for it
        if isinstance(error, ReplyInDoubt):
            return
        try:
            await self._record_failure(delivery, message, error)
        except ReplicaShortfall as exc:  # recorded on the master; only its copies are missing
            log.warning("ReplyFailed recorded but not confirmed by replicas",
                        extra={"fields": {"message_id": message.message_id, "error": str(exc)}})

    async def _record_failure(self, delivery: Delivery, message: MessageReceived,
                              error: BaseException | str) -> None:
        await self.outcomes.record(ReplyFailed(
            event_id=event_id_for("ReplyFailed", message.message_id),
            occurred_at=self.clock_ms(),
            message_id=message.message_id,
            user_id=message.user_id,
            attempts=delivery.attempt,
            error=str(error)[:500],
            retryable=not isinstance(error, NonRetryableError),
        ))

    async def close(self) -> None:
        await self.outcomes.aclose()
        await self.chat.close()
        if self.graph is not None:
            await self.graph.close()


def build_reply_handler(settings: Settings, pool: asyncpg.Pool, redis: Redis) -> ReplyHandler:
    """The replier wired from settings (dry-run without WhatsApp credentials)."""
    llm = load_llm_config(settings.llm_config_path)
    keys = Keys.from_settings(settings)
    # One transport for the LLM and the Graph API: a connection per concurrent reply at most.
    transport = transport_for_environment(max_connections=settings.replier_concurrency)
    # One key store: the key that opened a message is cached for sealing its reply.
    content = content_keys_for(settings, redis)
    graph = pacer = typing = gate = None
    if not settings.whatsapp_dry_run:
        graph = GraphClient(
            base_url=settings.whatsapp_api_base_url,
            version=settings.whatsapp_api_version,
            phone_number_id=settings.whatsapp_phone_number_id or "",
            token=settings.whatsapp_permanent_token or "",
            timeout_s=settings.graph_timeout_ms / 1000,
            typing_timeout_s=TYPING_TIMEOUT_S,
            transport=transport,
        )
        pacer = Pacer(
            redis, keys,
            pair=PaceRule(settings.graph_pair_interval_ms, settings.graph_pair_burst),
            max_messages_per_second=settings.graph_max_mps,
            give_up_ms=settings.graph_pacing_give_up_ms,
        )
        if settings.typing_indicator:
            typing = TypingIndicator(redis, keys, graph, timeout_s=TYPING_TIMEOUT_S)
        if pacer.takes_in_one_step and settings.redis_min_replicas == 0:
            gate = SendGate(redis)
    return ReplyHandler(
        redis=redis,
        outcomes=ReplyOutcomes.from_settings(settings, redis, content=content),
        store=ConversationStore(redis, keys, pool, content),
        chat=ChatClient(llm, settings.groq_api_key, settings.groq_base_url, transport),
        llm=llm,
        graph=graph,
        rule=ReplyModeRule(settings.contextual_after_count, settings.contextual_stale_ms),
        consumer_name=settings.consumer_name,
        pacer=pacer,
        typing=typing,
        gate=gate,
        concurrency=settings.replier_concurrency,
    )
