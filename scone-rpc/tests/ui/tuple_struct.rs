use scone_rpc::state::SconeState;

#[derive(SconeState, serde::Serialize, serde::Deserialize, Default)]
#[scone(service = "cart")]
struct Cart(Vec<String>);

fn main() {}
