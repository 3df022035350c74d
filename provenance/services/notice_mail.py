"""The e-mail of a recall notice, in plain words, in the recipient's language
(English or Chinese; the subscription says which), with the signed notice
attached so the recipient can check it (`provenance verify --notice`).
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

WORDS = {
    "en": {
        "subject": "Recall: {product}, lot {lot}",
        "subject_lifted": "Recall lifted: {product}, lot {lot}",
        "hello": "To {name},",
        "recalled": (
            "{regulator} recalled {product}, lot {lot} (class {cls}), on {time}.\nReason: {reason}"
        ),
        "through": "This lot was made from {source}, which is recalled.",
        "instructions": "What to do: {instructions}",
        "lifted": (
            "The recall of {product}, lot {lot}, was lifted on {time} by {regulator}: {reason}"
        ),
        "yours": "Our records show that you hold, held or are receiving this lot.",
        "ack": (
            "Please acknowledge the recall, and say how much you returned or destroyed "
            "(you may do this several times):\n"
            '  provenance recall ack {uri} --as "{name}" --recall {event_id} '
            '--returned "N UNIT" --destroyed "N UNIT"\n'
            "or in the portal, on the lot's page."
        ),
        "attached": (
            "The signed notice is attached (recall-notice.json); check it with "
            "`provenance verify --notice recall-notice.json`."
        ),
    },
    "zh": {
        "subject": "召回通知：{product}，批次 {lot}",
        "subject_lifted": "召回已解除：{product}，批次 {lot}",
        "hello": "{name}：",
        "recalled": (
            "{regulator} 于 {time} 召回了 {product}（批次 {lot}，{cls} 级召回）。\n原因：{reason}"
        ),
        "through": "该批次由已被召回的 {source} 制成。",
        "instructions": "处理要求：{instructions}",
        "lifted": "{product}（批次 {lot}）的召回已于 {time} 由 {regulator} 解除：{reason}",
        "yours": "根据记录，您持有、曾经持有或正在接收该批次。",
        "ack": (
            "请确认收到本召回通知，并说明退回或销毁的数量（可多次提交）：\n"
            '  provenance recall ack {uri} --as "{name}" --recall {event_id} '
            '--returned "数量 单位" --destroyed "数量 单位"\n'
            "也可以在门户网站该批次的页面上确认。"
        ),
        "attached": (
            "附件 recall-notice.json 是带签名的通知原文，可用 "
            "`provenance verify --notice recall-notice.json` 核验。"
        ),
    },
}


def mail_text(notice: dict[str, Any], name: str, language: str) -> tuple[str, str]:
    """(subject, body) of *notice* for the party *name*, in *language*."""
    words = WORDS.get(language, WORDS["en"])
    base = {"product": notice.get("product", ""), "lot": notice.get("lot_code", ""), "name": name}
    lines = [words["hello"].format(**base), ""]
    if notice.get("recalled"):
        subject = words["subject"].format(**base)
        for recall in notice.get("recalls", []):
            lines.append(
                words["recalled"].format(
                    **base,
                    regulator=recall["regulator"]["name"],
                    cls=recall.get("class") or "?",
                    time=recall["time"],
                    reason=recall["reason"],
                )
            )
            if not recall.get("direct", True):
                lines.append(words["through"].format(source=recall["source"]))
            if recall.get("instructions"):
                lines.append(words["instructions"].format(instructions=recall["instructions"]))
            lines += ["", words["yours"], ""]
            lines.append(
                words["ack"].format(uri=notice["lot"], event_id=recall["event_id"], name=name)
            )
            lines.append("")
    else:
        subject = words["subject_lifted"].format(**base)
        for recall in notice.get("lifted", []):
            lift = recall["lifted"]
            lines.append(
                words["lifted"].format(
                    **base,
                    time=lift["time"],
                    regulator=lift["regulator"]["name"],
                    reason=lift["reason"],
                )
            )
        lines.append("")
    lines.append(words["attached"])
    return subject, "\n".join(lines) + "\n"


def mail_message(
    notice: dict[str, Any], payload: bytes, *, sender: str, to: str, name: str, language: str
) -> EmailMessage:
    subject, body = mail_text(notice, name, language)
    message = EmailMessage()
    message["From"], message["To"] = sender, to
    message["Subject"] = _one_line(subject)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    message["Content-Language"] = language
    message.set_content(body)
    message.add_attachment(
        payload, maintype="application", subtype="json", filename="recall-notice.json"
    )
    return message


_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def _one_line(text: str) -> str:
    """A header value: no line breaks or controls (a product named before the
    ledger refused them must not add a header), at most 200 characters."""
    return _BREAKS.sub(" ", text).strip()[:200]
