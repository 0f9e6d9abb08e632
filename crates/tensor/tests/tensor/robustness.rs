//! Invalid input is an error, never a panic: arbitrary shapes and arguments (zeros included)
//! go through the shape-checking ops, and every call must return (Ok or Err) without panicking.

use proptest::prelude::*;
use sparsedp_tensor::{Conv2dParams, Pool2dParams, Tensor};

fn dims(max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 0..=max_rank)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn conv_and_pool_reject_or_succeed_without_panicking(
        xs in dims(5), ws in dims(5), gs in dims(5),
        stride in (0usize..3, 0usize..3), pad in (0usize..3, 0usize..3),
        dil in (0usize..3, 0usize..3), groups in 0usize..3, k in (0usize..4, 0usize..4),
    ) {
        let x = Tensor::zeros(&xs);
        let w = Tensor::zeros(&ws);
        let g = Tensor::zeros(&gs);
        let p = Conv2dParams {
            stride: [stride.0, stride.1],
            padding: [pad.0, pad.1],
            dilation: [dil.0, dil.1],
            groups,
        };
        let kernel = [k.0, k.1];
        let _ = x.conv2d(&w, None, p);
        let _ = x.conv2d(&w, Some(&g), p);
        let _ = Tensor::conv2d_backward_input(&g, &w, kernel, p);
        let _ = x.conv2d_backward_weight(&g, kernel, p);
        let _ = Tensor::conv2d_backward_bias(&g);
        let _ = x.conv2d_per_example_weight_grad(&g, kernel, p);
        let _ = x.conv2d_per_example_weight_grad_chunked(&g, kernel, p, groups, |_, _| Ok(()));
        let _ = x.im2col(kernel, p);
        let four = |v: &[usize]| [0, 1, 2, 3].map(|i| v.get(i).copied().unwrap_or(1));
        let _ = g.col2im(four(&xs), kernel, p);
        let pp = Pool2dParams { kernel, stride: [stride.0, stride.1], padding: [pad.0, pad.1] };
        let _ = x.max_pool2d(pp);
        let _ = x.avg_pool2d(pp);
        let _ = x.max_pool2d_backward(&g, pp);
        let _ = Tensor::avg_pool2d_backward(&g, four(&xs), pp);
        let _ = x.group_norm(groups, Some(&w), None, 1e-5);
    }

    #[test]
    fn shape_ops_reject_or_succeed_without_panicking(
        a in dims(4), b in dims(4), axis in 0usize..5, ta: bool, tb: bool,
        idx in prop::collection::vec(0usize..5, 0..6),
    ) {
        let x = Tensor::zeros(&a);
        let y = Tensor::zeros(&b);
        let _ = x.matmul_t(&y, ta, tb);
        let _ = Tensor::matmul_backward(&x, &y, &y, ta, tb);
        let _ = x.add(&y);
        let _ = x.masked(&y);
        let _ = x.broadcast_to(&b);
        let _ = x.sum_to_shape(&b);
        let _ = x.reshape(&b);
        let _ = x.sum_axis(axis, true);
        let _ = x.max_axis(axis, false);
        let _ = x.max_axis_backward(&y, axis);
        let _ = x.argmax_axis(axis);
        let _ = x.softmax();
        let _ = y.softmax_backward(&x);
        let _ = x.cross_entropy(&idx);
        let _ = x.cross_entropy_backward(&idx, &y);
        let _ = x.gather(axis, &idx, &b);
        let _ = x.scatter_add(axis, &idx, &y);
        let _ = x.index_select(axis, &idx);
        let _ = x.index_add(axis, &idx, &y);
        let _ = x.narrow(axis, idx.first().copied().unwrap_or(0), idx.len());
        let _ = x.permute(&idx);
        let _ = x.row_sq_norms();
        let _ = Tensor::cat(&[&x, &y], axis);
        let _ = x.unary_backward(sparsedp_tensor::UnaryOp::Tanh, &y);
    }
}
