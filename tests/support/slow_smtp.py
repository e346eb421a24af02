"""A slow SMTP server for tests: aiosmtpd (a real SMTP implementation) whose DATA handler
waits DELAY seconds before accepting, and appends each accepted message's Message-ID to
LOG, one per line, so a test counts what was delivered how many times. A recipient whose
address starts with "refuse" is refused (550) with the address in the reply, as real
servers do.

    slow_smtp.py PORT DELAY LOG
"""
import asyncio
import sys
from email.parser import BytesHeaderParser

from aiosmtpd.controller import Controller


class Slow:
    def __init__(self, delay, log):
        self.delay = delay
        self.log = log

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        headers = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content)
        with open(self.log, "a", encoding="utf-8") as f:
            f.write((headers.get("Message-ID") or "?").strip() + "\n")
        return "250 OK"


def main():
    port, delay, log = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    controller = Controller(Slow(delay, log), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
