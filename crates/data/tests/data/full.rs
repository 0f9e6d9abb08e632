//! The full datasets, where the data directory has them ($SPARSEDP_DATA, else ./data); skipped
//! with a message otherwise. CI fetches them first (.ci/run).

use sparsedp_data::{DataDir, DatasetName, Split};

fn dir_with(name: DatasetName) -> Option<DataDir> {
    let dir = DataDir::resolve(None);
    if dir.has(name) {
        Some(dir)
    } else {
        println!(
            "SKIPPED: {name} is not in the data directory {}; fetch it with `cargo xtask data {name} --dest DIR` and set SPARSEDP_DATA=DIR",
            dir.describe()
        );
        None
    }
}

#[test]
fn full_mnist() {
    let Some(dir) = dir_with(DatasetName::Mnist) else {
        return;
    };
    let train = dir
        .load(DatasetName::Mnist, Split::Train)
        .expect("mnist train");
    let test = dir
        .load(DatasetName::Mnist, Split::Test)
        .expect("mnist test");
    assert_eq!((train.len(), test.len()), (60000, 10000));
    assert_eq!(
        train.label_histogram(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test.label_histogram(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(train.labels()[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let mean = train.channel_means()[0];
    println!("MNIST train mean {mean}");
    assert!((mean - 0.1307).abs() < 5e-5, "MNIST mean {mean}");
    // The bundled subset is exactly the documented selection from the full set.
    for (split, full, per) in [(Split::Train, &train, 400), (Split::Test, &test, 100)] {
        let idx = full.class_balanced_indices(per).expect("balanced");
        let sub = full.subset(&idx, "x").expect("subset");
        let bundled = dir.load(DatasetName::MnistSubset, split).expect("bundled");
        assert_eq!(sub.images(), bundled.images());
        assert_eq!(sub.labels(), bundled.labels());
    }
}

#[test]
fn full_fashion_mnist() {
    let Some(dir) = dir_with(DatasetName::FashionMnist) else {
        return;
    };
    let train = dir
        .load(DatasetName::FashionMnist, Split::Train)
        .expect("fashion train");
    let test = dir
        .load(DatasetName::FashionMnist, Split::Test)
        .expect("fashion test");
    assert_eq!((train.len(), test.len()), (60000, 10000));
    assert_eq!(train.label_histogram(), vec![6000; 10]);
    assert_eq!(test.label_histogram(), vec![1000; 10]);
    let mean = train.channel_means()[0];
    println!("Fashion-MNIST train mean {mean}");
    assert!((mean - 0.2860).abs() < 5e-5, "Fashion-MNIST mean {mean}");
}

#[test]
fn full_cifar10() {
    let Some(dir) = dir_with(DatasetName::Cifar10) else {
        return;
    };
    let train = dir
        .load(DatasetName::Cifar10, Split::Train)
        .expect("cifar10 train");
    let test = dir
        .load(DatasetName::Cifar10, Split::Test)
        .expect("cifar10 test");
    assert_eq!((train.len(), test.len()), (50000, 10000));
    assert_eq!(train.label_histogram(), vec![5000; 10]);
    assert_eq!(test.label_histogram(), vec![1000; 10]);
    assert_eq!(train.labels()[..10], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    assert_eq!(test.labels()[..10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    let mean = train.channel_means();
    println!("CIFAR-10 train channel means {mean:?}");
    for (m, want) in mean.iter().zip([0.4914, 0.4822, 0.4465]) {
        assert!((m - want).abs() < 5e-5, "CIFAR-10 train mean {mean:?}");
    }
}
