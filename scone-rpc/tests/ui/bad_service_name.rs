use scone_rpc::state::SconeState;

#[derive(SconeState, serde::Serialize, serde::Deserialize, Default)]
#[scone(service = "my cart")]
struct Cart {
    items: Vec<String>,
}

fn main() {}
