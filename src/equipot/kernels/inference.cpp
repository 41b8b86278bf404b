// Python binding of the whole-model inference engine (engine.h).

#include <torch/extension.h>

#include "engine.h"

namespace py = pybind11;
using at::Tensor;

void register_inference(py::module& m) {
  py::class_<equipot::InferenceEngine>(m, "InferenceEngine")
      .def(py::init<double, int64_t, std::vector<double>, double, Tensor, std::vector<int64_t>,
                    int64_t, double, double, double, Tensor, Tensor, int64_t, double>())
      .def("add_layer", &equipot::InferenceEngine::add_layer)
      .def("run", &equipot::InferenceEngine::run,
           py::call_guard<py::gil_scoped_release>());
}
