//! Parameter counts of the paper's models, and their output shapes.

use sparsedp_nn::models::{TramerBonehCifar, TramerBonehMnist};
use sparsedp_nn::{Model, Tape};
use sparsedp_tensor::Tensor;

fn logits_shape(model: &dyn Model, batch: usize) -> Vec<usize> {
    let [c, h, w] = model.input_shape();
    let mut tape = Tape::new(model.params());
    let x = tape.input(Tensor::zeros(&[batch, c, h, w]));
    let y = model.forward(&mut tape, x).unwrap();
    tape.value(y).shape().to_vec()
}

#[test]
fn tramer_boneh_mnist_has_26010_parameters() {
    let m = TramerBonehMnist::new(0).unwrap();
    assert_eq!(m.params().num_scalars(), 26_010);
    assert_eq!(logits_shape(&m, 3), vec![3, 10]);
}

#[test]
fn tramer_boneh_cifar_has_550570_parameters() {
    let m = TramerBonehCifar::new(0).unwrap();
    assert_eq!(m.params().num_scalars(), 550_570);
    assert_eq!(logits_shape(&m, 2), vec![2, 10]);
}

#[test]
fn initialisation_is_seeded() {
    let a = TramerBonehMnist::new(5).unwrap();
    let b = TramerBonehMnist::new(5).unwrap();
    let c = TramerBonehMnist::new(6).unwrap();
    assert_eq!(a.params(), b.params());
    assert_ne!(a.params(), c.params());
}
