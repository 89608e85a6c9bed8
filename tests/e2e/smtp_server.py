"""A real SMTP server for Herald's email-smtp end-to-end test (tests/e2e/email_smtp.rs).

Owns the aiosmtpd set-up: aiosmtpd's Controller on 127.0.0.1 with an
ephemeral port, AUTH PLAIN and LOGIN against one fixed user and password,
TLS as asked (--tls), and scripted replies:

- RCPT TO greylist@...  -> 451 4.7.1 Greylisted, try again later
  (the first time for each recipient; accepted from the second attempt on)
- RCPT TO nouser@...    -> 550 5.1.1 User unknown
- wrong password        -> 535 5.7.8 Authentication credentials invalid (aiosmtpd's own)
- --tls none (default)   -> clear text; AUTH offered without TLS
- --tls starttls        -> aiosmtpd's own STARTTLS (tls_context=, require_starttls=True):
  no AUTH before TLS (538 to an AUTH, as Postfix's smtpd_tls_auth_only), MAIL
  before STARTTLS answered 530 Must issue a STARTTLS command first
- --tls implicit        -> TLS from the first byte (the Controller's ssl_context=)
  The certificate is --cert/--key (default tests/fixtures/smtp-tls/server.pem).

Prints `PORT <n>` on stdout once it accepts connections. Every accepted
message becomes a JSON file in --out (envelope, raw bytes in base64, and
what Python's `email` package makes of it); every connection and command
outcome is appended to --out/events.jsonl.

Whether each command came over TLS is recorded (`tls` in events and messages).

Usage: python smtp_server.py --out DIR --user USER --password PASSWORD
       [--tls none|starttls|implicit] [--cert PEM --key PEM]
"""

import argparse
import base64
import email
import email.policy
import json
import os
import signal
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "smtp-tls")
    p.add_argument("--cert", default=os.path.join(fixtures, "server.pem"))
    p.add_argument("--key", default=os.path.join(fixtures, "server.key"))
    return p.parse_args()


ARGS = parse_args()
LOCK = threading.Lock()
READY = threading.Event()
COUNTER = [0]


def event(kind, **fields):
    """Append one event line to events.jsonl."""
    if not READY.is_set():
        return  # the Controller's own start-up probe
    fields["event"] = kind
    fields["at"] = time.time()
    with LOCK:
        with open(os.path.join(ARGS.out, "events.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(fields, ensure_ascii=False) + "\n")


def addresses(header):
    if header is None:
        return []
    return [
        {"display_name": a.display_name, "addr_spec": a.addr_spec, "username": a.username, "domain": a.domain}
        for a in header.addresses
    ]


def describe(raw):
    """What Python's email package sees in the raw message."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = []
    text = html = None
    for part in msg.walk():
        info = {
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "transfer_encoding": part.get("Content-Transfer-Encoding"),
            "defects": [repr(d) for d in part.defects],
        }
        if not part.is_multipart():
            content = part.get_content()
            info["content"] = content
            if part.get_content_type() == "text/plain" and text is None:
                text = content
            elif part.get_content_type() == "text/html" and html is None:
                html = content
        parts.append(info)
    date = msg["Date"]
    all_defects = [repr(d) for d in msg.defects]
    for part in msg.walk():
        if part is not msg:
            all_defects += [repr(d) for d in part.defects]
    for name in msg.keys():
        all_defects += [repr(d) for d in getattr(msg[name], "defects", ())]
    return {
        "subject": str(msg["Subject"]) if msg["Subject"] is not None else None,
        "from": addresses(msg["From"]),
        "to": addresses(msg["To"]),
        "reply_to": addresses(msg["Reply-To"]),
        "date": str(date) if date is not None else None,
        "date_iso": date.datetime.isoformat() if date is not None and date.datetime else None,
        "message_id": str(msg["Message-ID"]) if msg["Message-ID"] is not None else None,
        "mime_version": msg.get("MIME-Version"),
        "list_unsubscribe": msg.get("List-Unsubscribe"),
        "list_unsubscribe_post": msg.get("List-Unsubscribe-Post"),
        "x_herald_rule": str(msg["X-Herald-Rule"]) if msg["X-Herald-Rule"] is not None else None,
        "content_type": msg.get_content_type(),
        "is_multipart": msg.is_multipart(),
        "text": text,
        "html": html,
        "parts": parts,
        "defects": all_defects,
        "header_names": list(msg.keys()),
    }


class Handler:
    def __init__(self):
        self.greylisted = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        event("ehlo", hostname=hostname, tls=_tls(server), offered=[r[4:] for r in responses])
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        event("mail", address=address, reply=250, login=_login(session), tls=_tls(server))
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "greylist" and address.lower() not in self.greylisted:
            self.greylisted.add(address.lower())
            event("rcpt", address=address, reply=451)
            return "451 4.7.1 Greylisted, try again later"
        if local == "nouser":
            event("rcpt", address=address, reply=550)
            return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)
        event("rcpt", address=address, reply=250)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        with LOCK:
            COUNTER[0] += 1
            n = COUNTER[0]
        queue_id = f"Q{n:05d}"
        record = {
            "queue_id": queue_id,
            "tls": _tls(server),
            "helo": session.host_name,
            "login": _login(session),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "raw_base64": base64.b64encode(raw).decode("ascii"),
            # The same bytes as text, non-ASCII bytes escaped (there should be none).
            "raw_ascii": raw.decode("ascii", "backslashreplace"),
        }
        try:
            record["parsed"] = describe(raw)
        except Exception as e:  # a parser crash is a finding, not a server crash
            record["parse_error"] = repr(e)
        path = os.path.join(ARGS.out, f"message-{n:04d}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, indent=1)
        os.replace(path + ".tmp", path)
        event("data", queue_id=queue_id, rcpt_tos=envelope.rcpt_tos)
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _tls(server):
    """Whether the connection of `server` (an SMTP instance) is encrypted now."""
    transport = getattr(server, "transport", None)
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def _login(session):
    data = getattr(session, "login_data", None)
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == ARGS.user.encode()
        and auth_data.password == ARGS.password.encode()
    )
    # The password is never written anywhere; only whether it matched.
    event("auth", mechanism=mechanism, login=auth_data.login.decode("utf-8", "replace"), success=ok, tls=_tls(server))
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


class LoggingSMTP(SMTP):
    def connection_made(self, transport):
        peer = transport.get_extra_info("peername")
        event("connect", peer=f"{peer[0]}:{peer[1]}" if peer else None)
        super().connection_made(transport)


class EphemeralController(Controller):
    """Controller on port 0: learn the real port before the start-up probe."""

    def factory(self):
        return LoggingSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main():
    os.makedirs(ARGS.out, exist_ok=True)
    tls = {}
    if ARGS.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ARGS.cert, ARGS.key)
        if ARGS.tls == "starttls":
            tls = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
        else:
            # Every byte is encrypted (aiosmtpd's own TLS flag is for STARTTLS).
            tls = {"ssl_context": context, "auth_require_tls": False}
    else:
        tls = {"auth_require_tls": False}
    controller = EphemeralController(
        Handler(),
        hostname="127.0.0.1",
        port=0,
        server_hostname="relay.test",
        authenticator=authenticator,
        auth_required=True,
        **tls,
    )
    controller.start()
    READY.set()
    print(f"PORT {controller.port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Also end when the test process goes away (stdin closes).
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
