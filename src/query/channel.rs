//! The protocol of a producing task and its stream: the task sends
//! `Some(item)` for each item and `None` once it has finished; an error item
//! is its last. A channel that closes without that end (the task panicked,
//! was dropped or gave up) must never look like a complete stream, so it
//! yields one more error, which `vanished` says. Used by every read that
//! runs on its own task (read-ahead, DoGet scans, whole-file decoders).

use futures::stream::{self, BoxStream, StreamExt};
use std::future::Future;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// What a producing task sends: `Some(item)`, then `None` at its end.
pub type Message<T, E> = Option<Result<T, E>>;

/// The items received on `rx` until the task's end or its first error; a
/// channel closed without an end yields `vanished`'s error.
pub fn until_end<T, E>(
    rx: mpsc::Receiver<Message<T, E>>,
    vanished: impl Future<Output = E> + Send + 'static,
) -> BoxStream<'static, Result<T, E>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    enum Step<T, E> {
        Item(Result<T, E>),
        End,
        Vanished(E),
    }
    ReceiverStream::new(rx)
        .map(|m| m.map_or(Step::End, Step::Item))
        .chain(stream::once(async move { Step::Vanished(vanished.await) }))
        .scan(false, |stopped, step| {
            let next = match step {
                _ if *stopped => None,
                Step::Item(Ok(item)) => Some(Ok(item)),
                Step::Item(Err(e)) | Step::Vanished(e) => {
                    *stopped = true;
                    Some(Err(e))
                }
                Step::End => None,
            };
            futures::future::ready(next)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(sent: Vec<Message<u32, String>>) -> Vec<Result<u32, String>> {
        let (tx, rx) = mpsc::channel(8);
        for m in sent {
            tx.send(m).await.unwrap();
        }
        drop(tx);
        until_end(rx, async { "vanished".to_owned() }).collect().await
    }

    #[tokio::test]
    async fn ends_only_at_the_end() {
        assert_eq!(run(vec![Some(Ok(1)), Some(Ok(2)), None]).await, vec![Ok(1), Ok(2)]);
        assert_eq!(run(vec![Some(Ok(1)), Some(Err("bad".into()))]).await, vec![Ok(1), Err("bad".into())]);
        assert_eq!(run(vec![Some(Ok(1))]).await, vec![Ok(1), Err("vanished".into())]);
        assert_eq!(run(vec![]).await, vec![Err("vanished".into())]);
    }
}
