//! The connection phase: the server's greeting, our answer, and the
//! authentication exchange.
//!
//! Only what a plain connection needs is spoken here. A server that
//! offers TLS (under any `ssl_mode` but `disabled`), or an account whose
//! authentication needs more than a scrambled password
//! (`mysql_native_password`, and `caching_sha2_password` when the server
//! has the password cached), is [`Refusal::Unsupported`]: the caller then
//! reads through the driver, which speaks all of it.

use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, AuthSwitchRequest, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::Framed;
use super::{server_error, WireError};

/// What a connection needs to log in.
pub struct Login<'a> {
    pub user: Option<&'a str>,
    pub pass: Option<&'a str>,
    pub db: Option<&'a str>,
    /// The endpoint's `ssl_mode` is `disabled`.
    pub tls_disabled: bool,
}

/// The capabilities we ask for (those the server also has are used).
fn wanted() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
}

/// Logs in; returns the capabilities in use (and MariaDB's extended
/// ones).
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Framed<S>,
    login: &Login<'_>,
) -> Result<(CapabilityFlags, MariadbCapabilities), WireError> {
    io.read().await?;
    if io.payload().first() == Some(&0xFF) {
        return Err(server_error(io.payload(), CapabilityFlags::empty()));
    }
    let greeting: HandshakePacket<'_> = ParseBuf(io.payload())
        .parse(())
        .map_err(WireError::protocol)?;
    let server_caps = greeting.capabilities();
    if server_caps.contains(CapabilityFlags::CLIENT_SSL) && !login.tls_disabled {
        return Err(WireError::Unsupported("the server offers TLS"));
    }
    if !server_caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(WireError::Unsupported("a server older than protocol 4.1"));
    }
    let caps = server_caps & wanted();
    // MariaDB's capabilities beyond the 32 bits, read by a server that
    // left out CLIENT_MYSQL (bit 0): only array binding is asked for
    let ext = if server_caps.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
        MariadbCapabilities::empty()
    } else {
        greeting.mariadb_ext_capabilities()
            & MariadbCapabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS
    };
    let mut nonce = greeting.scramble_1_ref().to_vec();
    nonce.extend_from_slice(greeting.scramble_2_ref().unwrap_or(&[]));
    nonce.resize(20, 0);
    let version = greeting
        .maria_db_server_version_parsed()
        .or_else(|| greeting.server_version_parsed())
        .unwrap_or((0, 0, 0));
    let plugin = match greeting.auth_plugin() {
        Some(AuthPlugin::CachingSha2Password) => AuthPlugin::CachingSha2Password,
        _ => AuthPlugin::MysqlNativePassword,
    };
    let data = plugin.gen_data(login.pass, &nonce);
    let response = HandshakeResponse::new(
        data.as_deref(),
        version,
        login.user.map(str::as_bytes),
        login.db.map(str::as_bytes),
        Some(plugin.clone()),
        caps,
        None,
        super::MAX_PACKET,
    )
    .with_mariadb_ext_capabilities(ext);
    let mut out = Vec::new();
    response.serialize(&mut out);
    io.write(&out).await?;
    authenticate(io, login, plugin, caps).await?;
    Ok((caps, ext))
}

/// The exchange after our answer, until the server's OK.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Framed<S>,
    login: &Login<'_>,
    mut plugin: AuthPlugin<'static>,
    caps: CapabilityFlags,
) -> Result<(), WireError> {
    let mut switched = false;
    loop {
        io.read().await?;
        match io.payload().first() {
            Some(0x00) => return Ok(()),
            Some(0xFF) => return Err(server_error(io.payload(), caps)),
            Some(0xFE) if !switched => {
                switched = true;
                let req: AuthSwitchRequest<'_> = ParseBuf(io.payload())
                    .parse(())
                    .map_err(WireError::protocol)?;
                let next = req.auth_plugin().into_owned();
                if !matches!(
                    next,
                    AuthPlugin::MysqlNativePassword | AuthPlugin::CachingSha2Password
                ) {
                    return Err(WireError::Unsupported(
                        "the account's authentication plugin",
                    ));
                }
                let data = next.gen_data(login.pass, req.plugin_data());
                let mut out = Vec::new();
                if let Some(d) = data {
                    d.serialize(&mut out);
                }
                plugin = next;
                io.write(&out).await?;
            }
            // caching_sha2_password: 3 is "fast authentication succeeded"
            // (the OK follows); 4 asks for the password in clear, over
            // TLS or RSA, which is the driver's to do
            Some(0x01) if matches!(plugin, AuthPlugin::CachingSha2Password) => {
                if io.payload().get(1) != Some(&0x03) {
                    return Err(WireError::Unsupported(
                        "caching_sha2_password's full authentication",
                    ));
                }
            }
            _ => return Err(WireError::Unsupported("an unexpected authentication step")),
        }
    }
}
