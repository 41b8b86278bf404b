// Python binding of the whole-model inference engine (engine.h), built from the tensors of
// pack_engine() (equipot/model/inference.py; engine_tensors.h). The TorchScript class and
// operator of the metatomic export are a library of their own (engine_library.cpp).

#include <torch/extension.h>

#include <optional>

#include "engine_tensors.h"

namespace py = pybind11;
using at::Tensor;

void register_inference(py::module& m) {
  // a kept forward pass (InferenceEngine::forward), handed back to backward()
  py::class_<equipot::Pass, std::shared_ptr<equipot::Pass>>(m, "EnginePass");
  py::class_<equipot::InferenceEngine>(m, "InferenceEngine")
      .def("run",
           [](equipot::InferenceEngine& e, Tensor vectors, Tensor neighbors, Tensor counts,
              Tensor species, bool gradient, bool features) {
             return e.run(vectors, neighbors, counts, species, gradient, nullptr, features);
           },
           py::arg("vectors"), py::arg("neighbors"), py::arg("counts"), py::arg("species"),
           py::arg("gradient"), py::arg("features") = false,
           py::call_guard<py::gil_scoped_release>())
      .def("forward",
           [](equipot::InferenceEngine& e, Tensor vectors, Tensor neighbors, Tensor counts,
              Tensor species) {
             std::shared_ptr<equipot::Pass> pass;
             std::vector<Tensor> out;
             {
               py::gil_scoped_release release;
               out = e.forward(pass, vectors, neighbors, counts, species);
             }
             return py::make_tuple(out[0], out[1], pass);
           },
           py::arg("vectors"), py::arg("neighbors"), py::arg("counts"), py::arg("species"))
      .def("backward",
           [](equipot::InferenceEngine& e, const std::shared_ptr<equipot::Pass>& pass,
              std::optional<Tensor> g_last) {
             return e.backward(pass, g_last.value_or(Tensor()));
           },
           py::arg("pass"), py::arg("g_last") = py::none(),
           py::call_guard<py::gil_scoped_release>());
  m.def("engine_from_tensors", &equipot::engine_from_tensors);
  m.attr("ENGINE_FORMAT") = equipot::kEngineFormat;
}
