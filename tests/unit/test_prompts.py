"""The conversation and summary prompts, and the summary input hash (pure)."""

from consumers.replier.conversation_prompt import Turn, format_conversation
from consumers.summarizer.summary_input import (
    RANGE_MS,
    SummaryInput,
    fallback_text,
    input_hash,
    summary_range,
)


def test_turns_alternate_user_and_bot_lines_oldest_first() -> None:
    turns = [Turn("1", "hi", "Hello!"), Turn("2", "price?", None), Turn("3", "hello?", None)]
    assert format_conversation(turns) == "User: hi\nBot: Hello!\nUser: price?\nUser: hello?"


def test_only_the_last_ten_messages_are_kept() -> None:
    turns = [Turn(str(i), f"m{i}", f"r{i}") for i in range(15)]
    text = format_conversation(turns)
    assert text.startswith("User: m5\nBot: r5")
    assert text.endswith("User: m14\nBot: r14")
    assert text.count("User:") == 10


def test_the_input_hash_depends_on_ids_texts_and_order() -> None:
    a = SummaryInput("id-1", "hello", 1)
    b = SummaryInput("id-2", "world", 2)
    assert input_hash([a, b]) == input_hash([SummaryInput("id-1", "hello", 99), b])
    assert input_hash([a, b]) != input_hash([b, a])
    assert input_hash([a]) != input_hash([SummaryInput("id-1", "hello!", 1)])
    # pairs are delimited: ("ab", "c") differs from ("a", "bc")
    assert input_hash([SummaryInput("ab", "c", 0)]) != input_hash([SummaryInput("a", "bc", 0)])


def test_the_range_is_the_last_seven_days_and_the_fallback_is_the_plain_summary() -> None:
    assert summary_range(10 * RANGE_MS) == (9 * RANGE_MS, 10 * RANGE_MS)
    assert fallback_text(3) == "Summary generated for 3 messages."
