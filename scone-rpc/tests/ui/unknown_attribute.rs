use scone_rpc::state::SconeState;

#[derive(SconeState, serde::Serialize, serde::Deserialize, Default)]
#[scone(service = "cart", ttl = 5)]
struct Cart {
    items: Vec<String>,
}

fn main() {}
