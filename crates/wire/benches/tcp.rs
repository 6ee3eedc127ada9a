//! TCP header parse + checksum of a full-sized segment (1460 bytes of payload).
//!
//! `cargo bench -p oxcat-wire` prints ours next to etherparse doing the same work.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use oxcat_wire::{TcpFlags, TcpPacket, TcpRepr, Timestamps};

const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn segment() -> Vec<u8> {
    let payload: Vec<u8> = (0..1460u32).map(|i| (i * 31) as u8).collect();
    let repr = TcpRepr {
        seq: 1,
        ack: 2,
        window: 502,
        timestamps: Some(Timestamps {
            tsval: 100,
            tsecr: 200,
        }),
        payload_len: payload.len(),
        ..TcpRepr::new(40000, 5001, TcpFlags::ACK | TcpFlags::PSH)
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut buf, SRC, DST, &payload)
        .expect("buffer sized by buffer_len");
    buf
}

fn bench(c: &mut Criterion) {
    let buf = segment();
    let mut group = c.benchmark_group("tcp_parse_and_checksum_1460");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("oxcat_wire", |b| {
        b.iter(|| {
            let packet = TcpPacket::new_checked(black_box(&buf[..])).expect("valid");
            TcpRepr::parse(&packet, black_box(SRC), black_box(DST)).expect("valid")
        })
    });
    group.bench_function("etherparse", |b| {
        b.iter(|| {
            let slice = etherparse::TcpSlice::from_slice(black_box(&buf[..])).expect("valid");
            let sum = slice
                .calc_checksum_ipv4(black_box(SRC.octets()), black_box(DST.octets()))
                .expect("fits");
            let options = slice.options_iterator().count();
            (sum == slice.checksum(), options)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
