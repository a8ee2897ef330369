//! Just enough of GoBGP 3's gRPC API (package `apipb`) to add and delete
//! IPv4 paths in gobgpd's global RIB: the messages are declared by hand
//! with the field numbers of gobgp's public API, and paths are passed in
//! its binary form (NLRI and path attributes as on the wire).
//!
//! `gobgp mrt inject` would be the obvious tool, but in gobgp 3.10 it
//! returns before gobgpd has taken every path (we saw 40–60 % of 1,000
//! arrive), so the benchmark streams the paths itself.

use std::net::Ipv4Addr;

use tonic::codegen::http::uri::PathAndQuery;
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Family {
    #[prost(int32, tag = "1")]
    pub afi: i32,
    #[prost(int32, tag = "2")]
    pub safi: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Path {
    #[prost(message, optional, tag = "9")]
    pub family: Option<Family>,
    #[prost(bytes = "vec", tag = "20")]
    pub nlri_binary: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "21")]
    pub pattrs_binary: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AddPathStreamRequest {
    /// TableType: 0 = GLOBAL.
    #[prost(int32, tag = "1")]
    pub table_type: i32,
    #[prost(string, tag = "2")]
    pub vrf_id: String,
    #[prost(message, repeated, tag = "3")]
    pub paths: Vec<Path>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeletePathRequest {
    #[prost(int32, tag = "1")]
    pub table_type: i32,
    #[prost(string, tag = "2")]
    pub vrf_id: String,
    #[prost(message, optional, tag = "3")]
    pub family: Option<Family>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

const IPV4_UNICAST: Family = Family { afi: 1, safi: 1 };

async fn client() -> anyhow::Result<tonic::client::Grpc<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    Ok(grpc)
}

/// Adds one path per prefix (ORIGIN IGP, empty AS_PATH, `next_hop`) in
/// batches of 1,000 over one AddPathStream call.
pub async fn add(prefixes: &[Ipv4Addr], next_hop: Ipv4Addr) -> anyhow::Result<()> {
    let mut nh = vec![0x40, 3, 4];
    nh.extend_from_slice(&next_hop.octets());
    let attrs = vec![vec![0x40, 1, 1, 0], vec![0x40, 2, 0], nh];
    let batches: Vec<AddPathStreamRequest> = prefixes
        .chunks(1000)
        .map(|chunk| AddPathStreamRequest {
            table_type: 0,
            vrf_id: String::new(),
            paths: chunk
                .iter()
                .map(|p| {
                    let mut nlri = vec![32];
                    nlri.extend_from_slice(&p.octets());
                    Path {
                        family: Some(IPV4_UNICAST),
                        nlri_binary: nlri,
                        pattrs_binary: attrs.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    let mut grpc = client().await?;
    let _: tonic::Response<Empty> = grpc
        .client_streaming(
            tonic::Request::new(tokio_stream::iter(batches)),
            PathAndQuery::from_static("/apipb.GobgpApi/AddPathStream"),
            ProstCodec::default(),
        )
        .await?;
    Ok(())
}

/// Deletes every IPv4 unicast path in the global RIB.
pub async fn delete_all() -> anyhow::Result<()> {
    let mut grpc = client().await?;
    let _: tonic::Response<Empty> = grpc
        .unary(
            tonic::Request::new(DeletePathRequest {
                table_type: 0,
                vrf_id: String::new(),
                family: Some(IPV4_UNICAST),
            }),
            PathAndQuery::from_static("/apipb.GobgpApi/DeletePath"),
            ProstCodec::default(),
        )
        .await?;
    Ok(())
}
