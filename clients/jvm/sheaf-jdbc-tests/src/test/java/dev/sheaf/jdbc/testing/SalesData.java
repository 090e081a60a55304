package dev.sheaf.jdbc.testing;

import java.time.LocalDate;
import java.util.List;

/**
 * The values of {@code test/sales} and {@code test/stores}, from the formulas {@code
 * testdata/make_sql_tables.py} writes them with: tests compute what to expect from these.
 */
public final class SalesData {
  private SalesData() {}

  /** Rows of the sales table (ids 0 .. ROWS-1). */
  public static final int ROWS = 1_000;

  /** Items by {@code id % 4}. */
  public static final List<String> ITEMS = List.of("apple", "pear", "fig", "o'range");

  /** Cities of stores 1..5. */
  public static final List<String> CITIES = List.of("oslo", "lisbon", "o'hare", "ünïcødé", "paris");

  /**
   * @return the store of sale {@code id}
   */
  public static int storeId(long id) {
    return (int) (id % 5 + 1);
  }

  /**
   * @return the item of sale {@code id}
   */
  public static String item(long id) {
    return ITEMS.get((int) (id % 4));
  }

  /**
   * @return the quantity of sale {@code id}
   */
  public static int qty(long id) {
    return (int) (id % 7 + 1);
  }

  /**
   * @return the price of sale {@code id}
   */
  public static double price(long id) {
    return (id % 13) * 0.5 + 1.25;
  }

  /**
   * @return the day of sale {@code id}
   */
  public static LocalDate soldOn(long id) {
    return LocalDate.of(2026, 1, 1).plusDays(id % 31);
  }

  /**
   * @return the city of store {@code storeId} (1..5)
   */
  public static String city(int storeId) {
    return CITIES.get(storeId - 1);
  }

  /**
   * @return the opening day of store {@code storeId} (1..5)
   */
  public static LocalDate opened(int storeId) {
    int i = storeId - 1;
    return LocalDate.of(2020 + i, 1 + i, 1 + i);
  }
}
