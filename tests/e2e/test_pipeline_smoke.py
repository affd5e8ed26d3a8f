from __future__ import annotations

from sqlalchemy import text

from tests.support.phones import random_phone
from tests.support.stack import GLOW_NUMBER, echo_responder, running_stack


def _phone() -> str:
    return random_phone()


def test_sms_gets_one_reply_through_the_whole_pipeline(infra, tmp_path):
    with running_stack(infra, tmp_path, model_provider="openai") as (stack, _):
        stack.openai.responder = echo_responder
        phone = _phone()
        stack.send_sms(GLOW_NUMBER, phone, "hello [c1-m1]")
        replies = stack.wait_replies(phone, 1)
        assert replies == ["ack c1-m1"]
        calls = stack.tool_calls(phone)
        assert [c["name"] for c in calls] == ["get_my_appointments"]
        stack.wait_idle()
        with stack.database.tenant_scope(1) as session:
            status = (
                session.execute(
                    text("SELECT status FROM outbox o JOIN clients c ON c.id = o.client_id WHERE c.phone_e164 = :p"),
                    {"p": phone},
                )
                .scalars()
                .all()
            )
        assert status == ["sent"]
