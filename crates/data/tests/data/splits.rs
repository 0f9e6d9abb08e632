//! Public/private splits.

use sparsedp_data::{
    DataDir, DataError, Dataset, DatasetName, PublicSource, Split, public_private_split,
};

#[test]
fn splits_are_disjoint_complete_seeded() {
    let s = public_private_split(60000, 0.1, 1).expect("split");
    assert_eq!((s.public.len(), s.private.len()), (6000, 54000));
    let mut all: Vec<usize> = s.public.iter().chain(&s.private).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..60000).collect::<Vec<_>>());
    assert!(s.public.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(public_private_split(60000, 0.1, 1).expect("again"), s);
    assert_ne!(
        public_private_split(60000, 0.1, 2)
            .expect("other seed")
            .public,
        s.public
    );
    // Spread over the whole range, not a prefix.
    assert!(
        s.public
            .iter()
            .filter(|&&i| i < 30000)
            .count()
            .abs_diff(3000)
            < 300
    );
    assert!(matches!(
        public_private_split(10, 1.5, 0),
        Err(DataError::InvalidArgument { .. })
    ));
    assert_eq!(
        public_private_split(10, 0.0, 0)
            .expect("none")
            .private
            .len(),
        10
    );
}

#[test]
fn public_sources() {
    let train = DataDir::at("/x")
        .load(DatasetName::MnistSubset, Split::Train)
        .expect("subset");
    let test = DataDir::at("/x")
        .load(DatasetName::MnistSubset, Split::Test)
        .expect("subset");
    let pp = PublicSource::Fraction {
        fraction: 0.1,
        seed: 5,
    }
    .apply(train.clone())
    .expect("split");
    assert_eq!((pp.public.len(), pp.private.len()), (400, 3600));
    let s = public_private_split(4000, 0.1, 5).expect("split");
    assert_eq!(pp.public.image(0), train.image(s.public[0]));
    assert_eq!(pp.private.label(7), train.label(s.private[7]));
    let none = PublicSource::None.apply(train.clone()).expect("none");
    assert_eq!((none.public.len(), none.private.len()), (0, 4000));
    // Another dataset as public data: the training set stays whole and private.
    let other = PublicSource::Other(test.clone())
        .apply(train.clone())
        .expect("other");
    assert_eq!((other.public.len(), other.private.len()), (1000, 4000));
    let rgb =
        Dataset::new("rgb", [3, 28, 28], 10, vec![0; 3 * 784], vec![0], None).expect("dataset");
    assert!(matches!(
        PublicSource::Other(rgb).apply(train),
        Err(DataError::InvalidArgument { .. })
    ));
}
