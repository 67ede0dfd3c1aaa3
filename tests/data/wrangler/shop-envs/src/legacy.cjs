module.exports = {
  describe(stage) {
    return "legacy module in " + stage;
  },
};
