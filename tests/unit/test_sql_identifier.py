"""Names enter SQL text only validated and quoted."""

import pytest

from app.platform.sql_identifier import quote_identifier, quote_identifiers


def test_a_plain_name_is_quoted() -> None:
    assert quote_identifier("messages_rebuild") == '"messages_rebuild"'


@pytest.mark.parametrize("name", ["", "Users", "users; DROP TABLE users", 'a"b', "1abc", "a-b",
                                  "x" * 64])
def test_anything_but_a_plain_lowercase_identifier_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        quote_identifier(name)


def test_a_column_list_is_each_name_validated_and_quoted() -> None:
    assert quote_identifiers(("id", "user_id")) == '"id", "user_id"'
    with pytest.raises(ValueError):
        quote_identifiers(("id", "x; DROP TABLE users"))
