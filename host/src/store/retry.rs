//! Running a transaction again when it lost a race with another one: on
//! PostgreSQL, a serialization failure (40001), a deadlock (40P01) or a
//! unique key taken by a concurrent insert (23505); on SQLite, a busy or
//! locked database past its timeout. A few attempts with a short, growing
//! pause; then the last error, so work is never silently dropped.

use std::future::Future;
use std::time::Duration;

/// Attempts before giving up.
const ATTEMPTS: u32 = 5;

/// True when `error` (anywhere in its chain) is such a lost race.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let Some(sqlx::Error::Database(db)) = cause.downcast_ref::<sqlx::Error>() else {
            return false;
        };
        db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                "40001" | "40P01" | "23505" | "5" | "6" | "517" | "262"
            )
        })
    })
}

/// Run `attempt` until it succeeds, fails for another reason, or has lost
/// [`ATTEMPTS`] races; `transient` says which errors are lost races.
pub async fn retrying<T, E, F, Fut>(
    what: &str,
    transient: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut pause = Duration::from_millis(10);
    for n in 1.. {
        match attempt().await {
            Err(e) if n < ATTEMPTS && transient(&e) => {
                tracing::debug!(
                    attempt = n,
                    "{what} lost a race with another transaction; running it again: {e}"
                );
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
            result => return result,
        }
    }
    unreachable!("the loop returns on its last attempt")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn lost_races_are_run_again_and_other_errors_are_not() {
        let tries = Cell::new(0);
        let ok: Result<u32, String> = retrying(
            "x",
            |e: &String| e == "race",
            || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                async move {
                    if n < 3 {
                        Err("race".to_string())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(ok, Ok(3));

        tries.set(0);
        let failed: Result<u32, String> = retrying(
            "x",
            |e: &String| e == "race",
            || {
                tries.set(tries.get() + 1);
                async { Err("disk full".to_string()) }
            },
        )
        .await;
        assert_eq!((failed, tries.get()), (Err("disk full".to_string()), 1));

        tries.set(0);
        let gave_up: Result<u32, String> = retrying(
            "x",
            |e: &String| e == "race",
            || {
                tries.set(tries.get() + 1);
                async { Err("race".to_string()) }
            },
        )
        .await;
        assert_eq!((gave_up, tries.get()), (Err("race".to_string()), ATTEMPTS));
    }
}
