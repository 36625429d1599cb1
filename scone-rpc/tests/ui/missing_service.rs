use scone_rpc::state::SconeState;

#[derive(SconeState, serde::Serialize, serde::Deserialize, Default)]
struct Cart {
    items: Vec<String>,
}

fn main() {}
