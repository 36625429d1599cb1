use scone_rpc::state::SconeState;

#[derive(SconeState, serde::Serialize, serde::Deserialize, Default)]
#[scone(service = "cart")]
enum Cart {
    #[default]
    Empty,
}

fn main() {}
