fn main() {
    print!("{}", switchboard_operator::crd::crd_yaml());
}
