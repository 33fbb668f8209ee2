//! What the process-level tests share: starting nodes and clusters ([`harness`]), test
//! upstreams ([`upstream`]), a Consul stand-in ([`consul`]), the control-plane API client
//! ([`api_client`]) and raw HTTP/1.1 on a socket ([`raw_http`]).

pub mod api_client;
pub mod background;
pub mod consul;
pub mod harness;
pub mod netns;
pub mod raw_http;
pub mod upstream;
