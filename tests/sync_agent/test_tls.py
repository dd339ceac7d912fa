"""TLS is verified against the site CA, and the edge can present a client certificate (mTLS)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from buffer import LineBuffer, Outbox
from config.models import BufferConfig, LineIdentity
from tests.buffer.records import mixed
from tests.sync_agent.helpers import running_agent, store_count, sync_config, token_files, wait_for
from tests.sync_agent.tls import make_pki, tls_store

IDENT = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")


async def _buffer(tmp: Path) -> str:
    buf = await LineBuffer.open(BufferConfig(path=str(tmp / "buffers" / "line3.db")), IDENT, background=False)
    await buf.append(mixed(0, 300))
    await buf.close()
    return buf.path


async def test_records_arrive_over_mtls_with_the_site_ca_and_a_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    await _buffer(tmp_path)
    with tls_store(f"sqlite:///{db}", store_tokens, pki, require_client_cert=True) as url:
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token, upstream={
            "allow_insecure_http": False, "ca_file": str(pki["ca"]),
            "client_certificate": str(pki["client"]), "client_key": str(pki["client_key"])})
        async with running_agent(cfg):
            await wait_for(lambda: store_count(db, "line3") == 300, 20, "records over mTLS")


async def test_a_server_the_site_ca_did_not_sign_gets_nothing_and_the_records_stay_queued(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    path = await _buffer(tmp_path)
    with tls_store(f"sqlite:///{db}", store_tokens, pki, require_client_cert=False) as url:
        # No ca_file: the system CAs, which never signed this server's certificate.
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token,
                          upstream={"allow_insecure_http": False})
        async with running_agent(cfg) as agent:
            await wait_for(lambda: any("CERTIFICATE_VERIFY_FAILED" in (st.last_error or "")
                                       for st in agent.lines.values()), 20, "a verification failure")
            await asyncio.sleep(0.3)
        assert store_count(db, "line3") == 0
        ob = await Outbox.open(path)
        assert (await ob.lag()).records == 300
        await ob.close()
