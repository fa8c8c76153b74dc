//! Writes that give up when the peer stops taking bytes.
//!
//! A client that keeps its TCP window at zero (or an origin that never reads a request body)
//! would otherwise hold a connection, its buffers and the origin connection forever. Every
//! write of the proxy goes through [`write_all`], which fails with
//! [`io::ErrorKind::TimedOut`] when one write makes no progress for the given time; any
//! progress starts the clock again, so slow but moving peers are served.

use std::io;
use std::time::Duration;

use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRent;

/// Writes `buf[range]` to `io`, each write bounded by `idle` (no bound when `idle` is zero).
///
/// Returns the buffer for reuse, except after a time-out: the kernel may still hold the
/// cancelled write's buffer, so an empty one comes back instead and the connection must be
/// closed.
pub async fn write_all<W: AsyncWriteRent>(
    io: &mut W,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    idle: Duration,
) -> (io::Result<()>, Vec<u8>) {
    let end = range.end.min(buf.len());
    let mut at = range.start.min(end);
    let mut buf = buf;
    while at < end {
        let write = io.write(buf.slice(at..end));
        let (result, slice) = if idle.is_zero() {
            write.await
        } else {
            match monoio::time::timeout(idle, write).await {
                Ok(done) => done,
                Err(_) => return (Err(io::ErrorKind::TimedOut.into()), Vec::new()),
            }
        };
        buf = slice.into_inner();
        match result {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::time::Instant;

    fn runtime() -> monoio::FusionRuntime<
        monoio::time::TimeDriver<monoio::IoUringDriver>,
        monoio::time::TimeDriver<monoio::LegacyDriver>,
    > {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_reader_that_never_reads_times_out_and_a_slow_one_does_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Never reads: the kernel buffers fill and the writer stalls.
        let stalled = std::thread::spawn(move || {
            let (conn, _) = listener.accept().expect("accept");
            std::thread::sleep(Duration::from_secs(3));
            drop(conn);
        });
        runtime().block_on(async move {
            let mut stream = monoio::net::TcpStream::connect_addr(addr)
                .await
                .expect("connect");
            let big = vec![7u8; 64 << 20];
            let len = big.len();
            let start = Instant::now();
            let (result, back) =
                write_all(&mut stream, big, 0..len, Duration::from_millis(300)).await;
            let err = result.expect_err("a stalled reader must time out");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(
                back.is_empty(),
                "the cancelled write's buffer is not handed back"
            );
            assert!(start.elapsed() < Duration::from_secs(3));
        });
        stalled.join().expect("reader");

        // With small socket buffers, a reader that takes 4 KiB every 5 ms makes the writer
        // wait many times, each time far less than the bound: no time-out.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        socket2::SockRef::from(&listener)
            .set_recv_buffer_size(4096)
            .expect("rcvbuf");
        let addr = listener.local_addr().expect("addr");
        let total = 1024 * 1024;
        let slow = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut got = 0;
            let mut piece = [0u8; 4096];
            while got < total {
                std::thread::sleep(Duration::from_millis(5));
                match conn.read(&mut piece) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        });
        runtime().block_on(async move {
            let mut stream = monoio::net::TcpStream::connect_addr(addr)
                .await
                .expect("connect");
            {
                use std::os::fd::{AsRawFd as _, BorrowedFd};
                // SAFETY: the descriptor is owned by `stream`, which outlives this borrow.
                let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
                socket2::SockRef::from(&fd)
                    .set_send_buffer_size(4096)
                    .expect("sndbuf");
            }
            let (result, back) = write_all(
                &mut stream,
                vec![1u8; total],
                0..total,
                Duration::from_secs(2),
            )
            .await;
            result.expect("a slow reader is served");
            assert_eq!(back.len(), total);
        });
        assert_eq!(slow.join().expect("reader"), total);
    }
}
