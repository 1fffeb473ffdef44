#[spindle::main]
async fn main(args: Vec<String>) {
    println!("{args:?}");
}

#[spindle::test]
async fn test_with_args(n: u32) {
    assert_eq!(n, 0);
}
