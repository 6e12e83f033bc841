"""STARTTLS is required by default when the relay is not on loopback ([mail] smtp_starttls =
auto, otlogin.conf(5)). The relay is the harness's SMTP sink, which offers no STARTTLS, named
"127.1": a name that reaches 127.0.0.1 but is not a loopback address as written (only
localhost, dotted 127.x.y.z and ::1 are), so it counts as remote. By default no mail goes to
it in clear (502, logged); with smtp_starttls = no it is delivered. The harness's own stacks
(smtp_host = 127.0.0.1, auto) show that a loopback relay needs no STARTTLS."""

import harness
from harness import E2ETestCase, unique_email


class RemoteRelayStack(harness.Stack):
    """A Stack whose relay is named 127.1, with [mail] smtp_starttls as given (None: unset)."""

    def __init__(self, starttls, **kw):
        self.starttls = starttls
        super().__init__(workers=1, **kw)

    def _write_otlogin_conf(self):
        super()._write_otlogin_conf()
        with open(self.conf) as f:
            text = f.read()
        self.wrote_host = "smtp_host = 127.0.0.1\n" in text
        text = text.replace("smtp_host = 127.0.0.1\n", "smtp_host = 127.1\n")
        if self.starttls is not None:
            text = text.replace("[mail]\n", "[mail]\nsmtp_starttls = %s\n" % self.starttls)
        with open(self.conf, "w") as f:
            f.write(text)


class StartTLSDefault(E2ETestCase):
    def send(self, st):
        client = st.new_client()
        addr = unique_email("tls")
        return st, client, addr, st.otp_send(client["token"], addr)

    def test_remote_relay_without_starttls_gets_no_mail(self):
        for starttls in (None, "auto"):
            with self.subTest(smtp_starttls=starttls):
                with RemoteRelayStack(starttls, name="tls-default") as st:
                    self.assertTrue(st.wrote_host, "the harness no longer writes smtp_host")
                    _, _, addr, r = self.send(st)
                    self.assertError(r, 502, "external_provider_configuration_error")
                    self.assertIn("STARTTLS required but not offered", st.log_text())
                    self.assertEqual(st.mailbox.pending(addr), [])

    def test_plain_smtp_when_configured(self):
        with RemoteRelayStack("no", name="tls-off") as st:
            _, _, addr, r = self.send(st)
            self.assertEqual(r.status, 200, "%r" % (r,))
            st.wait_mail(addr)
