//! [`ToSocketAddrs`]: what `bind`, `connect` and `send_to` accept, resolved without blocking a worker.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::io::blocking;

mod sealed {
    /// What a `ToSocketAddrs` value turns into: addresses at once, or a name to look up.
    pub enum Resolve {
        One(std::net::SocketAddr),
        Ready(Vec<std::net::SocketAddr>),
        Lookup(String),
        Lookup2(String, u16),
    }

    pub trait Sealed {
        fn to_resolve(&self) -> Resolve;
    }
}

pub(crate) use sealed::Resolve;

/// Values that name one or more socket addresses, as with `std::net::ToSocketAddrs`:
/// `SocketAddr` (and V4/V6), `(IpAddr, u16)`, `(&str, u16)`, `"host:port"` strings, slices of
/// addresses. Host names are looked up on the blocking pool, so a slow DNS server never stalls a
/// worker; literal addresses are parsed without a thread hop.
///
/// The trait is sealed: implement nothing, pass any of those types.
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddr};
/// spindle::block_on(async {
///     // All of these work wherever an address is taken:
///     let a = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let b = spindle::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
///     let c = spindle::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
///     let d = spindle::net::TcpListener::bind(("localhost", 0)).await.unwrap();
///     # drop((a, b, c, d));
/// });
/// ```
pub trait ToSocketAddrs: sealed::Sealed + Send + Sync {}

impl<T: sealed::Sealed + Send + Sync + ?Sized> ToSocketAddrs for T {}

macro_rules! ready {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn to_resolve(&self) -> Resolve {
                Resolve::One(SocketAddr::from(*self))
            }
        }
    )*};
}

ready!(SocketAddr, SocketAddrV4, SocketAddrV6, (IpAddr, u16), (Ipv4Addr, u16), (Ipv6Addr, u16), ([u8; 4], u16));

impl sealed::Sealed for [SocketAddr] {
    fn to_resolve(&self) -> Resolve {
        Resolve::Ready(self.to_vec())
    }
}

impl sealed::Sealed for Vec<SocketAddr> {
    fn to_resolve(&self) -> Resolve {
        Resolve::Ready(self.clone())
    }
}

impl sealed::Sealed for str {
    fn to_resolve(&self) -> Resolve {
        match self.parse::<SocketAddr>() {
            Ok(a) => Resolve::One(a),
            Err(_) => Resolve::Lookup(self.to_owned()),
        }
    }
}

impl sealed::Sealed for String {
    fn to_resolve(&self) -> Resolve {
        self.as_str().to_resolve()
    }
}

impl sealed::Sealed for (&str, u16) {
    fn to_resolve(&self) -> Resolve {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Resolve::One(SocketAddr::new(ip, self.1)),
            Err(_) => Resolve::Lookup2(self.0.to_owned(), self.1),
        }
    }
}

impl sealed::Sealed for (String, u16) {
    fn to_resolve(&self) -> Resolve {
        (self.0.as_str(), self.1).to_resolve()
    }
}

impl<T: sealed::Sealed + ?Sized> sealed::Sealed for &T {
    fn to_resolve(&self) -> Resolve {
        (**self).to_resolve()
    }
}

/// Looks up the socket addresses `host` names, as `std::net::ToSocketAddrs` does and as tokio's
/// `lookup_host`: a host name (`"example.com:80"`, `("example.com", 80)`) is resolved on the
/// blocking pool, so a slow DNS server never stalls a worker; literal addresses are returned
/// without a thread hop. An empty list of addresses gives an empty iterator; a failed lookup an
/// error naming the host.
///
/// ```
/// spindle::block_on(async {
///     let addrs: Vec<_> = spindle::net::lookup_host("127.0.0.1:8080").await.unwrap().collect();
///     assert_eq!(addrs, ["127.0.0.1:8080".parse().unwrap()]);
///     // Names go to the system resolver (here /etc/hosts).
///     let local = spindle::net::lookup_host(("localhost", 80)).await.unwrap();
///     assert!(local.into_iter().all(|a| a.ip().is_loopback() && a.port() == 80));
///     // A name without a port is refused, with the name in the error.
///     let err = spindle::net::lookup_host("localhost").await.unwrap_err();
///     assert!(err.to_string().contains("localhost"), "{err}");
/// });
/// ```
pub async fn lookup_host<T: ToSocketAddrs>(host: T) -> io::Result<std::vec::IntoIter<SocketAddr>> {
    Ok(lookup(&host).await?.1.into_iter())
}

/// What `addr` names, and the name that was looked up (for error messages), if any.
async fn lookup<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<(Option<String>, Vec<SocketAddr>)> {
    Ok(match addr.to_resolve() {
        Resolve::One(a) => (None, vec![a]),
        Resolve::Ready(v) => (None, v),
        Resolve::Lookup(s) => {
            let name = s.clone();
            let r = blocking::run("resolve", move || std::net::ToSocketAddrs::to_socket_addrs(&s).map(Vec::from_iter))
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("resolve {name:?}: {e}")))?;
            (Some(name), r)
        }
        Resolve::Lookup2(host, port) => {
            let name = format!("{host}:{port}");
            let r = blocking::run("resolve", move || {
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).map(Vec::from_iter)
            })
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("resolve {name:?}: {e}")))?;
            (Some(name), r)
        }
    })
}

/// Resolves `addr` to a non-empty list of addresses. Errors name what was being resolved.
pub(crate) async fn resolve<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<Vec<SocketAddr>> {
    let (what, addrs) = lookup(addr).await?;
    if addrs.is_empty() {
        let what = what.unwrap_or_else(|| "an empty address list".to_owned());
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: no addresses to use")));
    }
    Ok(addrs)
}

/// The first address `addr` names, without allocating for a literal address (`send_to`'s path).
pub(crate) async fn resolve_one<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<SocketAddr> {
    match addr.to_resolve() {
        Resolve::One(a) => Ok(a),
        _ => Ok(resolve(addr).await?[0]),
    }
}
