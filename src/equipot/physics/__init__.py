from equipot.physics.derivatives import (
    Prediction,
    hessian_from_graph,
    hessian_vector_product,
    predict,
)

__all__ = ["Prediction", "hessian_from_graph", "hessian_vector_product", "predict"]
