package taskpool.engine7;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * A Camunda 7 engine (Operaton or Camunda 7 CE) as its users run it: the Spring Boot starter with
 * the REST API at /engine-rest, configured entirely by command-line properties
 * (scripts/engine7.sh). No engine code changes.
 */
@SpringBootApplication
public class Engine7Harness {
    public static void main(String[] args) {
        SpringApplication.run(Engine7Harness.class, args);
    }
}
