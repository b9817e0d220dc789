//! The bot's Matrix session: logging in once and restoring that device afterwards (its
//! session is kept beside the crypto store), and the sync loop that follows the account's rooms.

use std::time::Duration;

use matrix_sdk::{
    Client, authentication::matrix::MatrixSession, config::SyncSettings, store::RoomLoadSettings,
};

use crate::{MatrixAccount, MatrixError};

/// Long-polls the homeserver for as long as the account runs. `Client::sync` pauses a second
/// after any sync that came back within a second of the previous one, which is exactly when
/// approvers are reacting to a fresh card; this loop only pauses after errors.
pub(crate) async fn follow(client: Client) {
    let settings = SyncSettings::default().timeout(Duration::from_secs(30));
    let mut backoff = Duration::from_secs(1);
    loop {
        match client.sync_once(settings.clone()).await {
            Ok(_) => backoff = Duration::from_secs(1),
            Err(e) => {
                let e = MatrixError::from(e);
                if e.is_refused_login() {
                    tracing::error!(
                        error = %e,
                        "the homeserver logged this device out; restart assent serve to log in as a new device"
                    );
                } else {
                    tracing::warn!(error = %e, retry_in = ?backoff, "matrix sync failed");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// A client logged in as the account's device and caught up on its rooms.
pub(crate) async fn signed_in(account: &MatrixAccount) -> Result<Client, MatrixError> {
    std::fs::create_dir_all(&account.store_dir)
        .map_err(|e| MatrixError::Invalid(format!("{}: {e}", account.store_dir.display())))?;
    let client = Client::builder()
        .homeserver_url(&account.homeserver)
        .sqlite_store(&account.store_dir, None)
        .build()
        .await
        .map_err(|e| MatrixError::Invalid(format!("cannot reach {}: {e}", account.homeserver)))?;
    restore_or_login(&client, account).await?;
    // Catch up on rooms at once (a restored session is only checked here); a long poll would
    // hold the start for up to 30 s when nothing is new.
    client.sync_once(SyncSettings::default().timeout(Duration::ZERO)).await?;
    Ok(client)
}

/// Moves a store whose login the homeserver refused to `<dir>.revoked-<unix seconds>`.
pub(crate) fn retire_store(dir: &std::path::Path) -> Result<std::path::PathBuf, MatrixError> {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut kept = dir.as_os_str().to_owned();
    kept.push(format!(".revoked-{}", since_epoch.as_secs()));
    let kept = std::path::PathBuf::from(kept);
    std::fs::rename(dir, &kept)
        .map_err(|e| MatrixError::Invalid(format!("moving {} aside: {e}", dir.display())))?;
    Ok(kept)
}

/// The login saved beside the crypto store (the SDK's `MatrixSession`, as JSON).
pub(crate) const SESSION_FILE: &str = "session.json";

/// Uses the device this account already has (its session is kept beside the crypto store), so
/// restarts keep one device and its keys; logs in once otherwise.
async fn restore_or_login(client: &Client, account: &MatrixAccount) -> Result<(), MatrixError> {
    let path = account.store_dir.join(SESSION_FILE);
    if let Some(session) =
        std::fs::read_to_string(&path).ok().and_then(|s| serde_json::from_str::<MatrixSession>(&s).ok())
    {
        client.matrix_auth().restore_session(session, RoomLoadSettings::default()).await?;
        return Ok(());
    }
    client
        .matrix_auth()
        .login_username(&account.user_id, &account.password)
        .initial_device_display_name("assent")
        .send()
        .await?;
    if let Some(session) = client.matrix_auth().session() {
        let text = serde_json::to_string(&session).map_err(|e| MatrixError::Invalid(e.to_string()))?;
        write_private(&path, text.as_bytes())
            .map_err(|e| MatrixError::Invalid(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Writes a file only its owner can read (it holds the bot's access token).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, bytes)
}
