//! The BGP row: N Services of one implementation's BGP pool, timed from
//! the first create until the LAN's BIRD router has every /32 from every
//! node (N networks, N × nodes paths), and from the first delete until it
//! has none of them. The router is fresh for each implementation: it has one session
//! per node address, so the two implementations' speakers take turns.

use std::time::{Duration, Instant};

use anyhow::bail;
use barelb_testsupport::bulk::{self, Spec};
use barelb_testsupport::cluster::{Cluster, LanRouter};
use barelb_testsupport::install::{apply, backend_yaml, ok};
use barelb_testsupport::peers::{
    BGP_POOL, Deployed, NODE_ASN, ROUTER_ASN, ROUTER_HOST, pool_annotations,
};
use barelb_testsupport::unique_name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;

#[derive(Debug, Default, Clone, Copy)]
pub struct BgpFigures {
    /// First create → the router has every /32 from every node.
    pub announced: Duration,
    /// First delete → the router has none of them.
    pub withdrawn: Duration,
}

const WITHIN: Duration = Duration::from_secs(600);

/// `n` Services announced by `speakers` speakers (the real nodes' and,
/// beyond them, hollow nodes').
pub async fn measure(
    c: &Cluster,
    d: &Deployed,
    n: usize,
    speakers: usize,
) -> anyhow::Result<BgpFigures> {
    let router = c.router_to(ROUTER_HOST, ROUTER_ASN, NODE_ASN, speakers);
    let _peer = RouterPeer::apply(c, d);
    let ns = unique_name("peers-bgp");
    let _gone = crate::scale::NamespaceGuard(c.clone(), ns.clone());
    apply(c, &backend_yaml(&ns, c.nodes, None));
    // Every backend Pod Ready before the clock starts: one turning Ready
    // later has every Service's EndpointSlice rewritten, at the endpointslice
    // controller's 20 writes/s, charged to the implementation measured then.
    ok(
        c.lab.kubectl(&[
            "-n",
            &ns,
            "rollout",
            "status",
            "deployment/backend",
            "--timeout=180s",
        ]),
        "backend rollout",
    );
    let api: Api<Service> = Api::namespaced(c.lab.client().await?, &ns);
    // With endpoints: MetalLB announces only Services that have some.
    let spec = Spec {
        class: d.peer.class().map(String::from),
        annotations: pool_annotations(BGP_POOL),
        app: Some("backend".into()),
        unproxied: true,
    };
    // One Service first, announced from every node, so the clock starts
    // with every session up: barelb's speakers open a session only once a
    // route needs it, MetalLB's as soon as the peer exists.
    bulk::create(&api, "warm", 1, &spec).await?;
    wait_sessions(&router, speakers).await?;
    wait_routes(&router, 1, speakers, Instant::now() + WITHIN).await?;
    let t = Instant::now();
    // Both implementations announce a Service once it has a ready
    // endpoint: when the endpointslice controller has written its slice.
    let slices: Api<EndpointSlice> = Api::namespaced(api.clone().into_client(), &ns);
    let endpoints = async {
        bulk::wait_endpoints(&slices, "bgp", n, WITHIN).await?;
        anyhow::Ok(t.elapsed())
    };
    let allocated = async {
        bulk::create(&api, "bgp", n, &spec).await?;
        let created = t.elapsed();
        bulk::wait_allocated(&api, "bgp", n, WITHIN).await?;
        anyhow::Ok((created, t.elapsed()))
    };
    let (endpoints, allocated) = tokio::join!(endpoints, allocated);
    let ((created, allocated), endpoints) = (allocated?, endpoints?);
    wait_routes(&router, n + 1, (n + 1) * speakers, t + WITHIN).await?;
    eprintln!(
        "bench-peers: {} BGP stages: created {} ms, all addressed {} ms, all with a ready endpoint {} ms",
        d.peer.name(),
        created.as_millis(),
        allocated.as_millis(),
        endpoints.as_millis()
    );
    let announced = t.elapsed();
    eprintln!(
        "bench-peers: {} BGP: {n} Services × {speakers} speakers on the router in {} ms",
        d.peer.name(),
        announced.as_millis()
    );
    let t = Instant::now();
    bulk::delete(&api, "bgp", n).await?;
    eprintln!(
        "bench-peers: {} BGP stages: deleted {} ms",
        d.peer.name(),
        t.elapsed().as_millis()
    );
    wait_routes(&router, 1, speakers, t + WITHIN).await?;
    let withdrawn = t.elapsed();
    eprintln!(
        "bench-peers: {} BGP: withdrawn from the router in {} ms",
        d.peer.name(),
        withdrawn.as_millis()
    );
    Ok(BgpFigures {
        announced,
        withdrawn,
    })
}

/// The implementation's BGPPeer for the router, deleted on drop.
struct RouterPeer<'a>(&'a Cluster, &'a Deployed);

impl<'a> RouterPeer<'a> {
    fn apply(c: &'a Cluster, d: &'a Deployed) -> RouterPeer<'a> {
        ok(
            c.lab.apply(&d.peer.router_peer()),
            "apply the router's BGPPeer",
        );
        RouterPeer(c, d)
    }
}

impl Drop for RouterPeer<'_> {
    fn drop(&mut self) {
        let _ = self.0.lab.kubectl(&self.1.peer.router_peer_delete());
    }
}

/// Waits until the router has an Established session with every node.
async fn wait_sessions(router: &LanRouter, nodes: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = router
            .birdc(&["show", "protocols"])
            .lines()
            .filter(|l| l.starts_with("node") && l.contains("Established"))
            .count();
        if up == nodes {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{up} of {nodes} BGP sessions established with the router");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the router's IPv4 table holds `networks` networks with
/// `paths` routes in all (`birdc show route count`).
async fn wait_routes(
    router: &LanRouter,
    networks: usize,
    paths: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let now = route_count(&router.birdc(&["show", "route", "count"]));
        if now == Some((paths, networks)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the router has {now:?} (routes, networks), not ({paths}, {networks})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (routes, networks) of `master4` from BIRD's
/// "R of R routes for N networks in table master4".
fn route_count(text: &str) -> Option<(usize, usize)> {
    let line = text.lines().find(|l| l.contains("table master4"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let routes = words.first()?.parse().ok()?;
    let at = words.iter().position(|w| *w == "networks")?;
    let networks = words.get(at.checked_sub(1)?)?.parse().ok()?;
    Some((routes, networks))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_birds_route_count() {
        let text = "BIRD 2.0.12 ready.\n3000 of 3000 routes for 1000 networks in table master4\n\
                    0 of 0 routes for 0 networks in table master6\nTotal: 3000 of 3000 routes for 1000 networks in 2 tables\n";
        assert_eq!(super::route_count(text), Some((3000, 1000)));
    }
}
